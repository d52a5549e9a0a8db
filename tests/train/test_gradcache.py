"""GradCache: gradients of the chunked step equal those of one full forward pass."""

from __future__ import annotations

import pytest
import torch

from umr.train.gradcache import contrastive_step
from umr.train.losses import info_nce


def _grads(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in module.named_parameters() if p.grad is not None}


def test_chunked_gradients_equal_full_batch_with_dropout() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Dropout(0.3), torch.nn.Linear(16, 8))
    net.train()
    xq, xd = torch.randn(7, 6), torch.randn(9, 6)

    def enc(items: list[torch.Tensor]) -> torch.Tensor:
        return torch.nn.functional.normalize(net(torch.stack(items)), dim=-1)

    def loss_fn(q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        return info_nce(q, d, torch.arange(7), 0.1)

    torch.manual_seed(1)
    full = contrastive_step([enc, enc], [list(xq), list(xd)], loss_fn, chunk_size=None)
    g_full = _grads(net)
    net.zero_grad()
    torch.manual_seed(1)
    chunked = contrastive_step([enc, enc], [list(xq), list(xd)], loss_fn, chunk_size=3)
    g_chunk = _grads(net)
    assert float(full) == pytest.approx(float(chunked), rel=1e-6)
    assert g_full.keys() == g_chunk.keys() and g_full
    for name in g_full:
        torch.testing.assert_close(g_chunk[name], g_full[name], rtol=1e-5, atol=1e-6)


def test_chunked_gradients_equal_full_batch_on_the_tiny_embedder(fresh_embedder) -> None:
    pytest.importorskip("peft")
    from umr.train.lora import LoraSettings, apply_lora
    from umr.train.synthetic import ShapesTask

    emb = fresh_embedder
    wrapped = apply_lora(emb.model, LoraSettings(r=4), seed=0)
    # non-zero B so that gradients reach A as well
    with torch.no_grad():
        for n, p in emb.model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    emb.model.train()
    pairs = ShapesTask(colours=2, shapes=2, seed=3).pairs(per_class=2)
    queries = [img for img, _ in pairs]
    docs = sorted({t for _, t in pairs})
    pos = torch.tensor([docs.index(t) for _, t in pairs])

    def enc(side: str):
        return lambda items: emb.encode_prepared(emb.prepare_inputs(items, side=side))

    def loss_fn(q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        return info_nce(q, d, pos, 0.05)

    contrastive_step([enc("query"), enc("document")], [queries, docs], loss_fn, chunk_size=None)
    g_full = _grads(emb.model)
    emb.model.zero_grad()
    contrastive_step([enc("query"), enc("document")], [queries, docs], loss_fn, chunk_size=3)
    g_chunk = _grads(emb.model)
    assert len(g_full) > 0 and g_full.keys() == g_chunk.keys()
    for name in g_full:
        torch.testing.assert_close(g_chunk[name], g_full[name], rtol=1e-4, atol=1e-6)
    assert wrapped is not None


def test_chunk_size_must_be_positive() -> None:
    net = torch.nn.Linear(2, 2)

    def enc(items):
        return net(torch.stack(items))

    with pytest.raises(ValueError, match="chunk size"):
        contrastive_step([enc], [[torch.zeros(2)] * 3], lambda q: q.sum(), chunk_size=0)
