"""fit() saves a normal model directory: it loads through Embedder.from_pretrained and both adapters;
an interrupted run resumes from checkpoint-last at the saved step."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("peft")

import umr
from umr.train import LoraSettings, fit
from umr.train.synthetic import ShapesTask

PROBE = ["a red circle", "a green square"]


def _pairs() -> list:
    return ShapesTask(colours=2, shapes=2, seed=7).pairs(per_class=3)


def _kwargs(out: Path, **extra) -> dict:
    kw = dict(epochs=2, batch_size=4, lr=5e-3, lora=LoraSettings(r=4), output_dir=out, progress=False, seed=3)
    kw.update(extra)
    return kw


def test_trained_dir_loads_like_any_model(fresh_embedder, shapes_model_dir, tmp_path: Path) -> None:
    base = fresh_embedder.embed_documents(PROBE)
    out = tmp_path / "ft"
    report = fit(fresh_embedder, _pairs(), **_kwargs(out))
    assert report.completed and report.steps == report.total_steps == 6
    assert len(report.losses) == 6 and all(np.isfinite(report.losses))
    trained = fresh_embedder.embed_documents(PROBE)
    assert np.abs(trained - base).max() > 1e-4  # training changed the model
    for name in ("config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json", "umr.json"):
        assert (out / name).is_file(), name
    marker = json.loads((out / "umr.json").read_text())
    assert marker["recipe"] == "gme" and marker["fine_tuned"]["steps"] == 6
    assert (marker["min_pixels"], marker["max_pixels"]) == (fresh_embedder.min_pixels, fresh_embedder.max_pixels)
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), "pt") as fh:
        keys = list(fh.keys())
    assert not any("lora_" in k or "base_layer" in k for k in keys)  # LoRA merged into plain weights
    loaded = umr.Embedder.from_pretrained(out, device="cpu")
    np.testing.assert_allclose(loaded.embed_documents(PROBE), trained, atol=1e-5)
    assert loaded.fingerprint != umr.Embedder.from_pretrained(shapes_model_dir, device="cpu").fingerprint
    assert fresh_embedder.fingerprint != umr.Embedder.from_pretrained(shapes_model_dir, device="cpu").fingerprint
    assert json.loads((out / "train_report.json").read_text())["steps"] == 6


def test_trained_dir_through_both_adapters(fresh_embedder, tmp_path: Path) -> None:
    out = tmp_path / "ft"
    fit(fresh_embedder, _pairs(), **_kwargs(out, epochs=1))
    expected_q = fresh_embedder.embed_queries(["a red circle"])[0]
    expected_d = fresh_embedder.embed_documents(PROBE)
    from langchain_umr import UMREmbeddings

    lc = UMREmbeddings(model=str(out), device="cpu")
    np.testing.assert_allclose(lc.embed_query("a red circle"), expected_q, atol=1e-5)
    np.testing.assert_allclose(lc.embed_documents(PROBE), expected_d, atol=1e-5)
    from llama_index.embeddings.umr import UMREmbedding

    li = UMREmbedding(model_name=str(out), device="cpu")
    np.testing.assert_allclose(li.get_query_embedding("a red circle"), expected_q, atol=1e-5)
    injected = UMREmbedding(embedder=umr.Embedder.from_pretrained(out, device="cpu"))
    np.testing.assert_allclose(injected.get_text_embedding("a green square"), expected_d[1], atol=1e-5)


def test_interrupted_run_resumes_from_the_saved_step(shapes_model_dir, tmp_path: Path) -> None:
    import torch

    def fresh():
        torch.manual_seed(0)
        return umr.Embedder.from_pretrained(shapes_model_dir, device="cpu")

    # reference: one uninterrupted run
    ref = fresh()
    fit(ref, _pairs(), **_kwargs(tmp_path / "ref", checkpoint_every=100))
    # interrupted after 2 of 6 steps (checkpoint every step), then resumed with a fresh base model
    out = tmp_path / "run"
    first = fit(fresh(), _pairs(), **_kwargs(out, checkpoint_every=1, max_steps=2))
    assert not first.completed and first.steps == 2
    state = json.loads((out / "checkpoint-last" / "state.json").read_text())
    assert state["step"] == 2 and not state["completed"]
    assert not (out / "model.safetensors").exists()  # no final model for an unfinished run
    seen: list[int] = []
    second = fit(fresh(), _pairs(), **_kwargs(out, checkpoint_every=1), on_step=lambda s, _: seen.append(s))
    assert second.resumed_from_step == 2 and seen == [3, 4, 5, 6]  # continued, not restarted from 0
    assert second.completed and len(second.losses) == 6
    np.testing.assert_allclose(second.losses[:2], first.losses, rtol=0, atol=0)
    resumed = umr.Embedder.from_pretrained(out, device="cpu").embed_documents(PROBE)
    np.testing.assert_allclose(resumed, ref.embed_documents(PROBE), atol=1e-5)  # same as never interrupted


def test_resume_refuses_a_different_setup(fresh_embedder, shapes_model_dir, tmp_path: Path) -> None:
    out = tmp_path / "run"
    fit(fresh_embedder, _pairs(), **_kwargs(out, max_steps=1, checkpoint_every=1))
    other = umr.Embedder.from_pretrained(shapes_model_dir, device="cpu")
    with pytest.raises(ValueError, match="batch_size"):
        fit(other, _pairs(), **_kwargs(out, batch_size=3))
    # resume=False starts over
    report = fit(other, _pairs(), **_kwargs(out, batch_size=3, resume=False, max_steps=1))
    assert report.resumed_from_step == 0 and report.steps == 1


def test_full_fine_tuning_and_gradcache_chunks(fresh_embedder, tmp_path: Path) -> None:
    report = fit(fresh_embedder, _pairs(), **_kwargs(tmp_path / "full", lora=None, lr=1e-4, epochs=1,
                                                      chunk_size=2, learn_temperature=True))
    assert report.completed and report.trainable_parameters > 100_000
    assert report.temperature != pytest.approx(0.05, abs=1e-7)  # learnable temperature moved
    loaded = umr.Embedder.from_pretrained(tmp_path / "full", device="cpu")
    np.testing.assert_allclose(loaded.embed_documents(PROBE), fresh_embedder.embed_documents(PROBE), atol=1e-5)


def test_ctrl_c_saves_the_state_and_the_rerun_continues(shapes_model_dir, tmp_path: Path) -> None:
    out = tmp_path / "run"

    def interrupt(step: int, _loss: float) -> None:
        if step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(umr.Embedder.from_pretrained(shapes_model_dir, device="cpu"), _pairs(),
            **_kwargs(out, checkpoint_every=100), on_step=interrupt)
    assert json.loads((out / "checkpoint-last" / "state.json").read_text())["step"] == 4
    report = fit(umr.Embedder.from_pretrained(shapes_model_dir, device="cpu"), _pairs(),
                 **_kwargs(out, checkpoint_every=100))
    assert report.resumed_from_step == 4 and report.completed and report.steps == 6


def test_gradient_checkpointing_gives_the_same_training(shapes_model_dir, tmp_path: Path) -> None:
    plain = fit(umr.Embedder.from_pretrained(shapes_model_dir, device="cpu"), _pairs(),
                **_kwargs(None, epochs=1))
    ckpt = umr.Embedder.from_pretrained(shapes_model_dir, device="cpu")
    checkpointed = fit(ckpt, _pairs(), **_kwargs(None, epochs=1, grad_checkpointing=True))
    np.testing.assert_allclose(checkpointed.losses, plain.losses, rtol=1e-4)
    assert not ckpt.model.training and not any(getattr(m, "gradient_checkpointing", False) for m in ckpt.model.modules())  # back to inference


def test_mixed_modalities_and_explicit_negatives(fresh_embedder) -> None:
    task = ShapesTask(colours=2, shapes=2, seed=9)
    samples = task.samples(2)
    pairs = []
    for i, (img, cls) in enumerate(samples):
        text = task.describe(cls)
        if i % 3 == 0:
            pairs.append((text, img))  # text -> image
        elif i % 3 == 1:
            pairs.append(({"text": "which shape is this?", "image": img}, text, ["a purple dot"]))  # fused -> text
        else:
            pairs.append({"query": img, "positive": {"text": text, "image": img}, "negatives": [samples[0][0]]})
    report = fit(fresh_embedder, pairs, epochs=1, batch_size=4, lr=1e-3, lora=LoraSettings(r=2), progress=False)
    assert report.completed and report.steps == 2 and all(np.isfinite(report.losses))


@pytest.mark.gpu
def test_bf16_gradcache_and_checkpointing_on_gpu(shapes_model_dir, tmp_path: Path) -> None:
    import torch

    emb = umr.Embedder.from_pretrained(shapes_model_dir, device="cuda")
    assert emb.dtype == torch.bfloat16
    report = fit(emb, _pairs(), **_kwargs(tmp_path / "gpu", chunk_size=2, grad_checkpointing=True))
    assert report.completed and all(np.isfinite(report.losses))
    loaded = umr.Embedder.from_pretrained(tmp_path / "gpu", device="cuda")
    np.testing.assert_allclose(loaded.embed_documents(PROBE), emb.embed_documents(PROBE), atol=2e-2)
    f32 = umr.Embedder.from_pretrained(shapes_model_dir, device="cuda", dtype="float32")
    report = fit(f32, _pairs(), **_kwargs(tmp_path / "gpu32", epochs=1, bf16=True))  # autocast path
    assert report.completed and all(np.isfinite(report.losses))


def test_an_image_failing_mid_run_names_it_and_leaves_a_usable_model(fresh_embedder, tmp_path: Path) -> None:
    import io

    from umr.errors import InputError

    buf = io.BytesIO()
    ShapesTask(seed=1).samples(1)[0][0].save(buf, format="PNG")
    broken = tmp_path / "truncated.png"
    broken.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])  # the header reads, the pixels do not
    pairs = [*_pairs(), ("a broken picture", broken)]
    out = tmp_path / "run"
    with pytest.raises(InputError, match=r"truncated\.png"):
        fit(fresh_embedder, pairs, **_kwargs(out, checkpoint_every=1))
    assert not fresh_embedder.model.training
    assert not any("lora_" in n for n, _ in fresh_embedder.model.named_parameters())
    assert fresh_embedder.embed_documents(PROBE).shape[0] == 2


def test_a_finished_run_continues_with_more_epochs(shapes_model_dir, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = fit(umr.Embedder.from_pretrained(shapes_model_dir, device="cpu"), _pairs(), **_kwargs(out, epochs=1))
    assert first.completed and first.steps == 3
    again = fit(umr.Embedder.from_pretrained(shapes_model_dir, device="cpu"), _pairs(), **_kwargs(out, epochs=1))
    assert again.resumed_from_step == 3 and again.steps == 3 and len(again.losses) == 3  # nothing left to do
    more = fit(umr.Embedder.from_pretrained(shapes_model_dir, device="cpu"), _pairs(), **_kwargs(out, epochs=2))
    assert more.resumed_from_step == 3 and more.steps == 6 and more.completed
