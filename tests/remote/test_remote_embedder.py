"""``umr.remote.RemoteEmbedder`` against a fake vLLM-style server: request format, order, retries, errors."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.remote.conftest import SERVED
from tests.remote.fake_openai import FakeServer, fake_vector
from umr.errors import ModelNotFoundError, RemoteServerError
from umr.processing import QWEN_UTILS_MAX_PIXELS, QWEN_UTILS_MIN_PIXELS, smart_resize
from umr.remote import RemoteEmbedder, prompt_to_messages

GME_DOC = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n"
    "<|im_start|>assistant\n<|endoftext|>"
)


def _remote(fake: FakeServer, **kwargs) -> RemoteEmbedder:
    kwargs.setdefault("backoff", 0.01)
    return RemoteEmbedder(fake.url, SERVED, **kwargs)


def _normalized(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def test_requests_follow_the_gme_recipe(fake: FakeServer, tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    Image.new("RGB", (1500, 1100), (10, 200, 30)).save(photo)
    emb = _remote(fake)
    assert emb.dim == 16 and emb.model_id == SERVED and len(emb.fingerprint) == 16
    fake.requests.clear()
    out = emb.embed_documents(["a passage about revenue", {"text": "a caption", "image": photo}])
    assert out.shape == (2, 16) and out.dtype == np.float32

    text_req = next(r for r in fake.posts() if "input" in r)
    assert text_req["model"] == SERVED and text_req["add_special_tokens"] is False
    assert text_req["input"] == [GME_DOC.format("a passage about revenue")]

    chat = next(r for r in fake.posts() if "messages" in r)
    assert chat["model"] == SERVED and chat["encoding_format"] == "float"
    assert chat["continue_final_message"] is True and chat["add_generation_prompt"] is False
    system, user, assistant = chat["messages"]
    assert system == {"role": "system", "content": "You are a helpful assistant."}
    assert assistant == {"role": "assistant", "content": "<|endoftext|>"}
    image_part, text_part = user["content"]  # GME: image before text
    assert text_part == {"type": "text", "text": "a caption"}
    url = image_part["image_url"]["url"]
    assert image_part["type"] == "image_url" and url.startswith("data:image/png;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    h, w = smart_resize(1100, 1500, 28, QWEN_UTILS_MIN_PIXELS, QWEN_UTILS_MAX_PIXELS)  # qwen-vl-utils resize
    assert sent.size == (w, h) and sent.mode == "RGB"
    assert chat["mm_processor_kwargs"] == {"min_pixels": 256 * 28 * 28, "max_pixels": 1280 * 28 * 28}

    # results: normalised, float32, in the caller's order (the fake answers in reverse order)
    np.testing.assert_allclose(out[0], _normalized(fake_vector(text_req["input"][0])), atol=1e-6)
    np.testing.assert_allclose(out[1], _normalized(fake_vector(chat["messages"])), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)


def test_query_instruction_goes_in_the_system_turn(fake: FakeServer) -> None:
    emb = _remote(fake, query_instruction="Find the page that answers the question.")
    one = emb.embed_queries("what is the total?")
    assert one.shape == (16,)
    prompt = fake.posts()[-1]["input"][0]
    assert prompt.startswith("<|im_start|>system\nFind the page that answers the question.<|im_end|>")
    emb.embed_queries(["x"], instruction="Other task.")
    assert fake.posts()[-1]["input"][0].startswith("<|im_start|>system\nOther task.<|im_end|>")


def test_order_is_kept_across_many_concurrent_requests(fake: FakeServer) -> None:
    emb = _remote(fake, batch_size=3, concurrency=4)
    texts = [f"passage {i}" for i in range(10)]
    images = [Image.new("RGB", (60 + i, 40), (i * 20, 0, 0)) for i in range(3)]
    inputs: list = [*texts[:5], *images, *texts[5:]]
    out = emb.embed_documents(inputs)
    single = np.stack([emb.embed_documents([x])[0] for x in inputs])
    np.testing.assert_allclose(out, single, atol=1e-6)
    assert len({tuple(np.round(r, 5)) for r in out}) == len(inputs)


def test_retries_with_backoff_on_503(fake: FakeServer) -> None:
    emb = _remote(fake)
    assert emb.dim == 16  # the one-off dimension probe
    fake.fail = [503, 503, 429]
    before = len(fake.posts())
    out = emb.embed_documents(["retry me"])
    assert out.shape == (1, 16) and len(fake.posts()) - before == 4
    fake.fail = [503] * 10
    with pytest.raises(RemoteServerError, match="after 3 attempt"):
        _remote(fake, max_retries=2).embed_documents(["never"])


def test_timeout_is_a_clear_error(fake: FakeServer) -> None:
    emb = _remote(fake, timeout=0.2, max_retries=1)
    _ = emb.dim
    fake.delay = 0.6
    with pytest.raises(RemoteServerError, match="timeout"):
        emb.embed_documents(["slow"])


def test_missing_model_names_the_served_ones(fake: FakeServer) -> None:
    with pytest.raises(ModelNotFoundError, match="serves: Alibaba-NLP/gme-Qwen2-VL-2B-Instruct"):
        RemoteEmbedder(fake.url, "dse-qwen2-2b-mrl-v1", recipe="dse")
    emb = RemoteEmbedder(fake.url, "dse-qwen2-2b-mrl-v1", recipe="dse", check_model=False)
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        emb.embed_documents(["x"])


def test_bad_arguments_and_unreachable_server() -> None:
    with pytest.raises(ValueError, match="http"):
        RemoteEmbedder("localhost:8000", SERVED)
    with pytest.raises(ValueError, match="api"):
        RemoteEmbedder("http://127.0.0.1:9", SERVED, api="tgi")  # type: ignore[arg-type]
    with pytest.raises(RemoteServerError, match="cannot connect"):
        RemoteEmbedder("http://127.0.0.1:9", SERVED, max_retries=1, backoff=0.01)


def test_api_key_and_dim(fake: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UMR_API_KEY", "sekret")
    emb = _remote(fake, dim=8)
    assert emb.embed_documents(["x"]).shape == (1, 8)
    assert all(r["authorization"] == "Bearer sekret" for r in fake.requests)
    np.testing.assert_allclose(np.linalg.norm(emb.embed_documents(["x"])), 1.0, atol=1e-6)


def test_sglang_payload(fake: FakeServer) -> None:
    emb = _remote(fake, api="sglang")
    emb.embed_documents([{"text": "cap", "image": Image.new("RGB", (56, 56))}, "plain"])
    body = fake.posts()[-1]
    assert body["input"][0]["text"] == "cap" and body["input"][0]["image"].startswith("data:image/png")
    assert body["input"][1] == {"text": "plain"}


def test_prompt_to_messages_for_other_recipes() -> None:
    from umr.prompting import fill
    from umr.recipes import EMBED_RECIPES

    q3 = fill(EMBED_RECIPES["qwen3-vl-embedding"].template, instruction="Task.", content="<|vision_start|><|image_pad|><|vision_end|>hi")
    msgs, open_end = prompt_to_messages(q3, "<|vision_start|><|image_pad|><|vision_end|>", "data:x")
    assert open_end and [m["role"] for m in msgs] == ["system", "user"]
    um = fill(EMBED_RECIPES["u-marvel"].template, instruction="", content="text only")
    msgs, open_end = prompt_to_messages(um, "<|image|>", "data:x")
    assert open_end and msgs[-1] == {"role": "assistant", "content": "<emb>."}


# -- through the store and the command line ---------------------------------------------------------------
def test_store_and_cli_with_a_server(fake: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import json

    from tests.hostile_corpus import make_pdf, make_png
    from umr.cli import main
    from umr.store import ChromaStore

    docs = tmp_path / "docs"
    docs.mkdir()
    make_pdf(docs / "report.pdf", pages=2, text="quarterly revenue")
    make_png(docs / "chart.png", size=(120, 80))

    with ChromaStore(_remote(fake), tmp_path / "db1", batch_size=2) as store:
        report = store.add_files(docs)
        assert report.ok and report.pages_added == 3
        assert store.collection.metadata["umr_model_id"] == SERVED
        hits = store.search("quarterly revenue", k=2)
        assert len(hits) == 2 and all(abs(h.score) <= 1.0001 for h in hits)
    chats = [r for r in fake.posts() if "messages" in r]
    assert len(chats) >= 3  # one chat request per page image

    db = tmp_path / "db2"
    rc = main(["index", str(docs), "--db", str(db), "--server", fake.url, "--server-model", SERVED,
               "--api-key", "k1", "--json", "--no-progress"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["pages_added"] == 3 and out["failed"] == []
    assert fake.requests[-1]["authorization"] == "Bearer k1"
    # search needs only --server: the model name comes from the index
    rc = main(["search", "revenue", "--db", str(db), "--server", fake.url, "-k", "2", "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert rc == 0 and len(rows) == 2 and rows[0]["source"].endswith((".pdf", ".png"))
    rc = main(["search", "revenue", "--db", str(db), "--server", fake.url, "--server-model", "nope"])
    assert rc == 1 and "serves: " in capsys.readouterr().err


def test_embedder_spec_for_a_server(fake: FakeServer) -> None:
    """What each Ray actor loads for ``umr index --ray --server URL``: a RemoteEmbedder, same identity."""
    from umr.distributed import EmbedderSpec, identity_of, plan_resources

    spec = EmbedderSpec(SERVED, {"backoff": 0.01}, server=fake.url)
    emb = spec.load()
    assert isinstance(emb, RemoteEmbedder) and spec.identity() == identity_of(emb)
    assert spec.identity()["dim"] == 16
    res = plan_resources({"CPU": 2.0, "GPU": 1.0}, remote=spec.remote, actors=None)
    assert res.gpus_per_actor == 0 and res.actors == 4  # light actors: requests in parallel
