"""The Ray Data pipeline (``umr.distributed``) on a local Ray with 2 CPUs, the tiny model in 2 actors and
a real ``chroma run`` server: same ids, vectors, metadata, page PNGs and report as the local path, and a
killed actor (its batch retried) leaves no duplicates."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.hostile_corpus import make_pdf, make_png
from umr.distributed import EmbedderSpec, index_files, plan_resources
from umr.store import ChromaStore

BUDGET = 64 * 28 * 28  # unit tests of the stages; the end-to-end test uses the recipe's budget (as the CLI)
VOLATILE = {"indexed_at", "image_path", "image_uri"}


class _CrashOnce:
    """Wraps an embedder; the first call in any actor of the job kills the actor's process."""

    def __init__(self, inner: Any, marker: str) -> None:
        self._inner = inner
        self._marker = marker

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def embed_documents(self, inputs: Any, **kwargs: Any) -> Any:
        try:
            fd = os.open(self._marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return self._inner.embed_documents(inputs, **kwargs)
        os.close(fd)
        os._exit(1)  # a worker killed mid-run: Ray restarts the actor and retries the batch


@dataclass(frozen=True)
class CrashOnceSpec(EmbedderSpec):
    marker: str = ""

    def load(self) -> Any:
        return _CrashOnce(super().load(), self.marker)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    docs = tmp_path_factory.mktemp("corpus")
    make_pdf(docs / "report.pdf", pages=3, text="quarterly revenue")
    make_pdf(docs / "memo.pdf", pages=1, text="memo")
    (docs / "memo-copy.pdf").write_bytes((docs / "memo.pdf").read_bytes())  # shares memo.pdf's page
    make_png(docs / "chart.png", size=(300, 200))
    make_png(docs / "photo.png", size=(90, 160), color=(10, 120, 200))
    (docs / "broken.pdf").write_bytes(b"%PDF-1.7\nthis is not a pdf at all")
    return docs


@pytest.fixture(scope="module")
def local_index(tmp_path_factory: pytest.TempPathFactory, tiny_embedder: Any, corpus: Path):
    db = tmp_path_factory.mktemp("local") / "db"
    with ChromaStore(tiny_embedder, db, batch_size=4) as store:  # planned rendering, as the Ray pipeline
        first = store.add_files(corpus)
        second = store.add_files(corpus)
        got = store.collection.get(include=["embeddings", "metadatas", "documents"])
    return first, second, got, db / "images"


def _facts(report: Any) -> tuple:
    return (report.files_indexed, report.files_skipped, report.pages_added, report.pages_skipped,
            report.pages_replaced, sorted((os.path.basename(e.source), e.kind) for e in report.failed))


def _by_id(got: dict) -> dict[str, tuple]:
    """Records by id; of the paths of a page shared by identical files, the set (which one is ``source``
    depends on which writer came first)."""
    from umr.store.sources import source_paths

    def facts(m: dict) -> dict:
        out = {k: v for k, v in m.items() if k not in VOLATILE and k != "filename" and not k.startswith("source")}
        out["paths"] = sorted(source_paths(m))
        return out

    return {
        i: (np.asarray(e, dtype=np.float32), facts(m), d)
        for i, e, m, d in zip(got["ids"], got["embeddings"], got["metadatas"], got["documents"])
    }


def test_ray_index_equals_local_and_survives_a_killed_actor(
    ray_session, chroma_server, tiny_model_dir: Path, corpus: Path, local_index, tmp_path: Path, capsys
) -> None:
    import json

    from umr.cli import main

    host, port = chroma_server
    local_first, local_second, local_got, local_images = local_index
    spec = CrashOnceSpec(str(tiny_model_dir), {"device": "cpu"}, marker=str(tmp_path / "crashed"))
    images = tmp_path / "ray-images"
    report = index_files(corpus, embedder=spec, host=host, port=port, collection="parity", image_dir=images,
                         actors=2, batch_size=2, files_per_task=2, pages_per_block=2)
    assert (tmp_path / "crashed").exists()  # an actor really died mid-run
    assert _facts(report) == _facts(local_first)
    assert report.failed[0].kind == local_first.failed[0].kind == "corrupt"

    store = ChromaStore(_Identity.of(tiny_model_dir), host=host, port=port, collection="parity")
    got = store.collection.get(include=["embeddings", "metadatas", "documents"])
    assert len(got["ids"]) == len(set(got["ids"])) == len(local_got["ids"]) == 6  # no duplicates
    ray_rows, local_rows = _by_id(got), _by_id(local_got)
    assert set(ray_rows) == set(local_rows)
    for pid, (vec, meta, doc) in local_rows.items():
        rvec, rmeta, rdoc = ray_rows[pid]
        assert np.abs(rvec - vec).max() <= 1e-5, pid
        assert rmeta == meta and rdoc == doc
    # page PNGs: same files, same bytes
    for meta in got["metadatas"]:
        ray_png = Path(meta["image_path"])
        assert ray_png.is_relative_to(images)
        assert ray_png.read_bytes() == (local_images / ray_png.relative_to(images)).read_bytes()

    # again through the CLI (no crash now): everything skipped as by the local path, nothing changes
    rc = main(["index", str(corpus), "--ray", "--host", host, "--port", str(port), "--collection", "parity",
               "--model", str(tiny_model_dir), "--device", "cpu", "--actors", "2", "--json", "--no-progress"])
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{\n"):])  # Ray may print its own notices to stdout first
    assert rc == 1  # the broken file is still reported
    assert (summary["files_indexed"], summary["files_skipped"], summary["pages_added"], summary["pages_skipped"]) \
        == _facts(local_second)[:4]
    assert [f["kind"] for f in summary["failed"]] == ["corrupt"]
    assert sorted(store.collection.get(include=[])["ids"]) == sorted(got["ids"])


class _Identity:
    """The tiny model's identity without loading it (what the driver of the pipeline uses)."""

    @staticmethod
    def of(model_dir: Path) -> Any:
        from umr.embedder import Embedder
        from umr.store.info import RecordedModel

        ident = Embedder.identity(model_dir)
        return RecordedModel({f"umr_{k}": v for k, v in ident.items()})


def test_render_plan_without_weights_equals_the_loaded_embedders(tiny_model_dir: Path, tiny_embedder: Any) -> None:
    from umr.distributed import EmbedderSpec
    from umr.embedder import Embedder

    assert tiny_embedder.render_plan is not None
    assert Embedder.render_plan_for(tiny_model_dir) == tiny_embedder.render_plan
    assert EmbedderSpec(str(tiny_model_dir), {"device": "cpu"}).render_plan() == tiny_embedder.render_plan
    assert Embedder.render_plan_for(tiny_model_dir, max_pixels=512 * 28 * 28) != tiny_embedder.render_plan
    assert EmbedderSpec("m", server="http://127.0.0.1:1").render_plan() is None  # a server: fit rendering


def test_identity_matches_the_loaded_embedder(tiny_model_dir: Path, tiny_embedder: Any) -> None:
    from umr.embedder import Embedder

    ident = Embedder.identity(tiny_model_dir, device="cpu")
    assert ident == {"model_id": tiny_embedder.model_id, "dim": tiny_embedder.dim,
                     "fingerprint": tiny_embedder.fingerprint, "max_pixels": tiny_embedder.max_pixels}
    assert Embedder.identity(tiny_model_dir, max_pixels=BUDGET)["fingerprint"] != ident["fingerprint"]


def test_resource_plan() -> None:
    cpu = plan_resources({"CPU": 2.0}, remote=False, actors=2)
    assert cpu.gpus_per_actor == 0 and cpu.actors * cpu.cpus_per_actor + cpu.writer_cpus <= 1.0 + 1e-9
    gpu = plan_resources({"CPU": 16.0, "GPU": 4.0}, remote=False, actors=None)
    assert (gpu.actors, gpu.gpus_per_actor, gpu.cpus_per_actor) == (4, 1.0, 1.0)
    with pytest.raises(ValueError, match="lower --actors"):
        plan_resources({"CPU": 16.0, "GPU": 2.0}, remote=False, actors=3)
    assert plan_resources({"CPU": 4.0, "GPU": 1.0}, remote=True, actors=None).gpus_per_actor == 0


def test_cli_without_ray_says_what_to_install(monkeypatch: pytest.MonkeyPatch, corpus: Path, tmp_path: Path,
                                              capsys) -> None:
    import sys

    from umr.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)
    rc = main(["index", str(corpus / "memo.pdf"), "--ray", "--db", str(tmp_path / "db")])
    assert rc == 1 and 'pip install "umr[ray]"' in capsys.readouterr().err


def test_write_stage_is_idempotent(chroma_server, tiny_embedder: Any, tmp_path: Path) -> None:
    """A retried write task upserts the same content-derived ids: the count does not change."""
    from umr.distributed import _EmbedActor, _Job, _Rows, _WriteActor, identity_of
    from umr.documents import iter_pages

    host, port = chroma_server
    make_pdf(tmp_path / "a.pdf", pages=2)
    job = _Job(host=host, port=port, collection="idem", identity=identity_of(tiny_embedder),
               max_pixels=BUDGET, image_dir=None, store_images=False, embed_text_layer=False, timeout=60,
               file_timeout=None, memory_limit=None, max_image_pixels=10**8, pages_per_block=8, metadata={})
    job.open_store(images=False)
    rows = _Rows()
    for page in iter_pages(tmp_path / "a.pdf", max_pixels=BUDGET):
        rows.page(page)
    batch = rows.flush()

    class _Given:
        def load(self) -> Any:
            return tiny_embedder

    embedded = _EmbedActor(_Given(), job)(batch)
    writer = _WriteActor(job)
    for _ in range(2):
        out = writer(dict(embedded))
        assert list(out["kind"]) == ["written", "written"]
    assert writer.store.count() == 2


@pytest.mark.slow
def test_cli_ray_into_a_db_folder(ray_session, tiny_model_dir: Path, corpus: Path, tmp_path: Path, capsys) -> None:
    """``umr index --ray --db DIR`` serves the folder for the job; the local path then finds it complete."""
    import json

    from umr.cli import main

    db = tmp_path / "db"
    args = ["index", str(corpus), "--db", str(db), "--model", str(tiny_model_dir), "--device", "cpu",
            "--no-progress"]
    assert main([*args, "--ray", "--actors", "1"]) == 1  # broken.pdf
    out = capsys.readouterr().out
    # memo-copy.pdf shares memo.pdf's page: stored once, skipped once, listed under both paths
    assert "indexed 5 file(s), 6 page(s) added; 0 file(s) unchanged (1 page(s) skipped)" in out and "FAILED" in out
    assert len(list((db / "images").rglob("*.png"))) == 6
    assert main(args) == 1
    assert "indexed 0 file(s), 0 page(s) added; 5 file(s) unchanged (7 page(s) skipped)" in capsys.readouterr().out
    assert main(["stats", "--db", str(db), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["documents_list"]
    assert sorted(Path(d["source"]).name for d in listed) == ["chart.png", "memo-copy.pdf", "memo.pdf", "photo.png",
                                                              "report.pdf"]
