"""LoRA targets, the merged state dict (adapters folded in, plain names) and in-place merging."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("peft")

from umr.train.lora import LoraSettings, apply_lora, merge_into_model, merged_state_dict


def test_targets_language_model_and_optionally_vision(fresh_embedder) -> None:
    model = fresh_embedder.model
    apply_lora(model, LoraSettings(r=2, vision=True))
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("language_model" in n for n in names) and any("visual.blocks" in n for n in names)
    assert all("lora_" in n for n in names)


def test_merged_state_dict_equals_merge_and_unload(fresh_embedder) -> None:
    model = fresh_embedder.model
    plain_keys = set(model.state_dict())
    wrapped = apply_lora(model, LoraSettings(r=2))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    merged = merged_state_dict(model)
    assert set(merged) == plain_keys
    before = fresh_embedder.embed_documents(["a red circle"])
    unloaded = merge_into_model(wrapped)
    assert unloaded is model  # merged in place: the embedder keeps its model object
    for key, value in unloaded.state_dict().items():
        torch.testing.assert_close(merged[key], value, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(
        torch.from_numpy(fresh_embedder.embed_documents(["a red circle"])), torch.from_numpy(before), atol=1e-5, rtol=0
    )


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="rank r must be a positive integer"):
        LoraSettings(r=0)
    with pytest.raises(ValueError, match="dropout"):
        LoraSettings(dropout=1.5)


def test_importing_umr_train_loads_neither_peft_nor_torch() -> None:
    import subprocess
    import sys
    from pathlib import Path

    core = Path(__file__).resolve().parents[2] / "core"
    code = (
        "import sys; import umr.train, umr.train.cli; "
        "assert 'peft' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(core), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
