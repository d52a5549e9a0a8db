"""The store's parts on their own: writer lock, page images, collection access, HashEmbedder's home."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from umr.store import ChromaStore
from umr.store.collection import ChromaCollection, chroma_client, collection_metadata, scalar_metadata
from umr.store.images import PageImages, png_bytes
from umr.store.lock import LOCK_NAME, StoreBusyError, WriterLock
from umr.testing import HashEmbedder


def test_hash_embedder_lives_in_umr_testing_and_umr_store_still_finds_it() -> None:
    import umr.store

    assert umr.store.HashEmbedder is HashEmbedder
    from umr.store import HashEmbedder as again

    assert again is HashEmbedder
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        umr.store.Nope  # noqa: B018


def test_the_cli_and_the_store_share_one_writer_lock(tmp_path: Path, store: ChromaStore) -> None:
    """While a store method writes, the lock the CLI takes for ``index --ray`` is busy, and the reverse."""
    entered, release = threading.Event(), threading.Event()
    assert store.lock.folder == tmp_path / "db"

    def slow_embed(inputs, **kw):  # holds the store's lock inside add_texts
        entered.set()
        release.wait(30)
        return HashEmbedder(dim=16).embed_documents(inputs)

    store.embedder.embed_documents = slow_embed  # type: ignore[method-assign]
    thread = threading.Thread(target=store.add_texts, args=(["held"],))
    thread.start()
    try:
        assert entered.wait(30)
        busy = WriterLock(tmp_path / "db")
        with pytest.raises(StoreBusyError, match=rf"another umr process \(pid {os.getpid()}\) is writing"), busy.hold(
            wait=False
        ):
            pass
    finally:
        release.set()
        thread.join()
    with WriterLock(tmp_path / "db").hold(wait=False):  # free again
        assert (tmp_path / "db" / LOCK_NAME).exists()


def test_writer_lock_is_reentrant_and_a_server_has_none(tmp_path: Path) -> None:
    lock = WriterLock(tmp_path / "new-db")
    with lock.hold(), lock.hold(wait=False):  # a locked method calling another one
        assert (tmp_path / "new-db" / LOCK_NAME).exists()
    with WriterLock(None).hold(wait=False):
        pass


def test_page_images_round_trip_and_remove_only_their_own(tmp_path: Path) -> None:
    images = PageImages(tmp_path / "images")
    img = Image.new("RGB", (20, 10), (10, 200, 30))
    saved = images.save(["abc-p1-x", "abd-p2-x"], [img, png_bytes(img)])
    assert [p.parent.name for p in saved] == ["ab", "ab"] and all(p.is_file() for p in saved)
    with Image.open(saved[1]) as back:
        assert np.array_equal(np.asarray(back.convert("RGB")), np.asarray(img))  # PNG is lossless
    assert saved[0].as_uri().startswith("file://")
    outside = tmp_path / "user.png"
    img.save(outside)
    images.remove([{"image_path": str(saved[0])}, {"image_path": str(outside)}, None, {}])
    assert not saved[0].exists() and saved[1].exists() and outside.exists()


def test_collection_writes_in_batches_and_refuses_another_model(tmp_path: Path) -> None:
    client = chroma_client(tmp_path / "db")
    meta = collection_metadata("m", 4, "fp", 1000)
    col = ChromaCollection.open(client, "parts", meta)
    col.max_batch = 3
    sizes: list[int] = []
    upsert = col.raw.upsert

    def spy(**kw):
        sizes.append(len(kw["ids"]))
        return upsert(**kw)

    col.raw.upsert = spy
    ids = [f"id{i}" for i in range(7)]
    metas = [scalar_metadata({"n": np.int64(i), "skip": None, "path": tmp_path}, "t") for i in range(7)]
    col.upsert(ids, np.eye(7, 4, dtype=np.float32), metas, [""] * 7)
    assert sizes == [3, 3, 1] and col.count() == 7
    assert col.existing_ids(["id1", "nope", "id6"]) == {"id1", "id6"}
    assert col.first_metadata({"n": 2}) == {"n": 2, "path": str(tmp_path)}
    assert col.delete_where({"n": {"$gte": 5}}) == 2 and col.count() == 5
    with pytest.raises(ValueError, match="cannot be mixed"):
        ChromaCollection.open(client, "parts", collection_metadata("other", 8, "fp2", 1000))
    with pytest.raises(TypeError, match="join lists"):
        scalar_metadata({"tags": ["a", "b"]}, "t")


def test_a_waiting_writer_says_once_whom_it_waits_for(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from umr.cli import configure_logging

    holder, waiter = WriterLock(tmp_path / "db"), WriterLock(tmp_path / "db")
    got_it = threading.Event()

    def wait_for_it() -> None:
        with waiter.hold():
            got_it.set()

    with caplog.at_level(logging.WARNING, logger="umr.store.lock"), holder.hold():
        thread = threading.Thread(target=wait_for_it)
        thread.start()
        deadline = time.monotonic() + 30
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not got_it.is_set()  # really waiting
    thread.join(30)
    assert got_it.is_set()
    (record,) = [r for r in caplog.records if r.name == "umr.store.lock"]
    assert record.getMessage().startswith(
        f"waiting for another umr process writing to {tmp_path / 'db'} (pid {os.getpid()})"
    )
    # the CLI's default log level shows it (only failed-file notes of the indexer are left to the summary)
    configure_logging(verbose=False, quiet=False)
    assert logging.getLogger("umr.store.lock").isEnabledFor(logging.WARNING)
    assert logging.getLogger("umr.store.faults").isEnabledFor(logging.WARNING)
