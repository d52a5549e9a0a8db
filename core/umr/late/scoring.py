"""MaxSim (late-interaction) scoring, batched in torch, on the GPU when one is present.

``score(q, d) = sum over query tokens i of max over page tokens j of <q_i, d_j>``, padding masked on both
sides (a padded query token adds nothing, a padded page token is never the max). Inputs are lists of
``(n_tokens, dim)`` arrays or tensors of any float dtype; the arithmetic is float32.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

MultiVector = np.ndarray | torch.Tensor

#: upper bound on the number of float32 similarity entries one block materialises (about 256 MB)
_BLOCK_ELEMENTS = 64 * 1024 * 1024


def default_device() -> torch.device:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def as_tensor(vectors: MultiVector, device: torch.device | str | None = None) -> torch.Tensor:
    """One multi-vector as a float32 ``(n_tokens, dim)`` tensor on ``device``; rejects other shapes."""
    tensor = torch.as_tensor(vectors) if isinstance(vectors, np.ndarray) else vectors
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"a multi-vector must be a numpy array or torch tensor, got {type(vectors).__name__}")
    if tensor.ndim != 2:
        raise ValueError(f"a multi-vector must be 2-D (n_tokens, dim), got shape {tuple(tensor.shape)}")
    if tensor.shape[0] == 0:
        raise ValueError("a multi-vector needs at least one token, got 0")
    return tensor.to(device=device, dtype=torch.float32)


def pad(
    items: Sequence[MultiVector], device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad multi-vectors to ``(B, L_max, dim)`` float32 plus a ``(B, L_max)`` bool mask of real tokens."""
    if len(items) == 0:
        raise ValueError("pad needs at least one multi-vector")
    tensors = [as_tensor(item, device) for item in items]
    dims = {t.shape[1] for t in tensors}
    if len(dims) != 1:
        raise ValueError(f"all multi-vectors must share one dim, got dims {sorted(dims)}")
    lengths = torch.tensor([t.shape[0] for t in tensors], device=tensors[0].device)
    padded = torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True)
    mask = torch.arange(padded.shape[1], device=padded.device)[None, :] < lengths[:, None]
    return padded, mask


def _padded(
    items: Sequence[MultiVector] | torch.Tensor, mask: torch.Tensor | None, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(items, torch.Tensor) and items.ndim == 3:
        tensor = items.to(device=device, dtype=torch.float32)
        if mask is None:
            mask = torch.ones(tensor.shape[:2], dtype=torch.bool, device=device)
        else:
            if tuple(mask.shape) != tuple(tensor.shape[:2]):
                raise ValueError(f"mask shape {tuple(mask.shape)} does not match {tuple(tensor.shape[:2])}")
            mask = mask.to(device=device, dtype=torch.bool)
        return tensor, mask
    if mask is not None:
        raise ValueError("a mask goes with a padded 3-D tensor, not with a list of multi-vectors")
    return pad(list(items), device)


def maxsim_padded(
    queries: torch.Tensor,
    query_mask: torch.Tensor,
    docs: torch.Tensor,
    doc_mask: torch.Tensor,
) -> torch.Tensor:
    """MaxSim of padded queries ``(Q, Lq, D)`` against padded pages ``(N, Ld, D)`` -> ``(Q, N)``.

    Works in blocks of pages so the ``(Q, Lq, n, Ld)`` similarity block stays bounded.
    """
    n_q, len_q, dim = queries.shape
    n_d, len_d, dim_d = docs.shape
    if dim != dim_d:
        raise ValueError(f"query dim {dim} differs from page dim {dim_d}")
    flat_q = queries.reshape(n_q * len_q, dim)
    q_weight = query_mask.to(queries.dtype)  # (Q, Lq)
    out = torch.empty((n_q, n_d), dtype=torch.float32, device=queries.device)
    step = max(1, _BLOCK_ELEMENTS // max(1, n_q * len_q * len_d))
    neg = torch.finfo(torch.float32).min
    for start in range(0, n_d, step):
        block = docs[start : start + step]
        block_mask = doc_mask[start : start + step]
        n_b = block.shape[0]
        sims = flat_q @ block.reshape(n_b * len_d, dim).T  # (Q*Lq, n*Ld)
        sims = sims.view(n_q, len_q, n_b, len_d).masked_fill(~block_mask[None, None, :, :], neg)
        best = sims.amax(dim=3)  # (Q, Lq, n)
        out[:, start : start + n_b] = (best * q_weight[:, :, None]).sum(dim=1)
    return out


def maxsim(
    queries: Sequence[MultiVector] | torch.Tensor,
    docs: Sequence[MultiVector] | torch.Tensor,
    *,
    query_mask: torch.Tensor | None = None,
    doc_mask: torch.Tensor | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """MaxSim scores ``(n_queries, n_pages)`` as a float32 CPU tensor.

    ``queries`` / ``docs`` are lists of ``(n_tokens, dim)`` arrays, or padded 3-D tensors with their bool
    masks (``True`` for real tokens). ``device`` defaults to the GPU when present.
    """
    dev = torch.device(device) if device is not None else default_device()
    with torch.inference_mode():
        q, qm = _padded(queries, query_mask, dev)
        d, dm = _padded(docs, doc_mask, dev)
        return maxsim_padded(q, qm, d, dm).cpu()


def token_max(queries: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """For each query token, its best similarity in each page: ``(M, n_pages)``.

    ``queries`` ``(M, D)``; ``tokens`` ``(T, D)`` are the pages' tokens concatenated page after page
    without padding, ``lengths`` ``(n_pages,)`` (each >= 1) says how many belong to each page. On the CPU
    the per-page maximum is numpy's ``maximum.reduceat`` (several times faster than a scatter); on a GPU
    a ``scatter_reduce``.
    """
    if lengths.numel() and int(lengths.min()) < 1:
        raise ValueError("every page needs at least one token")
    sims = queries @ tokens.T  # (M, T)
    n_pages = int(lengths.numel())
    if sims.device.type == "cpu":
        starts = np.zeros(n_pages, dtype=np.int64)
        np.cumsum(lengths.cpu().numpy()[:-1], out=starts[1:])
        return torch.from_numpy(np.maximum.reduceat(sims.numpy(), starts, axis=1))
    owner = torch.repeat_interleave(torch.arange(n_pages, device=sims.device), lengths.to(sims.device))
    best = torch.full((sims.shape[0], n_pages), torch.finfo(torch.float32).min, device=sims.device)
    best.scatter_reduce_(1, owner[None, :].expand_as(sims), sims, reduce="amax", include_self=True)
    return best


def maxsim_gathered(
    queries: torch.Tensor, query_mask: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor:
    """MaxSim of padded queries ``(Q, Lq, D)`` against unpadded concatenated pages -> ``(Q, n_pages)``.

    The query tokens of all queries go through one matrix product, bounded in memory by blocks of query
    tokens.
    """
    n_q, len_q, dim = queries.shape
    flat = queries.reshape(n_q * len_q, dim)
    keep = query_mask.reshape(-1)
    rows = max(1, _BLOCK_ELEMENTS // max(1, tokens.shape[0]))
    parts = [token_max(flat[s : s + rows], tokens, lengths) for s in range(0, flat.shape[0], rows)]
    best = torch.cat(parts).to(queries.device)
    best = best * keep[:, None].to(best.dtype)
    return best.view(n_q, len_q, -1).sum(dim=1)


#: float32 page tokens one CPU block holds (4 MB at dim 128: the block and its similarities stay in cache)
_CPU_BLOCK_TOKENS = 8192


def token_max_pages(queries: torch.Tensor, pages: Sequence[np.ndarray], block_tokens: int = _CPU_BLOCK_TOKENS
                    ) -> np.ndarray:
    """For each query token, its best similarity in each page: ``(M, n_pages)`` float32, on the CPU.

    ``queries`` is a float32 ``(M, D)`` CPU tensor; ``pages`` are ``(n_tokens >= 1, D)`` arrays of any float
    dtype (float16 memory-mapped views from :meth:`~umr.late.page_store.PageVectorStore.views` are read in
    place). Pages are converted to float32 block by block into one reused buffer of about ``block_tokens``
    rows, each block goes through one matrix product and ``maximum.reduceat``: nothing the size of all the
    candidates is materialised, so the work stays in cache (about 6x faster than gathering 200 pages of
    768 tokens into one float32 array first).
    """
    n_q, dim = queries.shape
    out = np.empty((n_q, len(pages)), dtype=np.float32)
    if not pages:
        return out
    lengths = [int(p.shape[0]) for p in pages]
    if min(lengths) < 1:
        raise ValueError("every page needs at least one token")
    buffer = torch.empty((max(block_tokens, max(lengths)), dim), dtype=torch.float32)
    first = 0
    with warnings.catch_warnings():
        # memory-mapped views are read-only; torch only reads them (copy_ converts float16 -> float32)
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        while first < len(pages):
            fill, last, starts = 0, first, []
            while last < len(pages) and (last == first or fill + lengths[last] <= buffer.shape[0]):
                page = pages[last]
                if page.shape[1] != dim:
                    raise ValueError(f"page tokens have dim {page.shape[1]}, the query {dim}")
                buffer[fill : fill + lengths[last]].copy_(torch.from_numpy(page))
                starts.append(fill)
                fill += lengths[last]
                last += 1
            sims = (queries @ buffer[:fill].T).numpy()
            out[:, first:last] = np.maximum.reduceat(sims, np.asarray(starts), axis=1)
            first = last
    return out


def maxsim_pages(query: MultiVector, pages: Sequence[np.ndarray], device: torch.device | str | None = None
                 ) -> np.ndarray:
    """MaxSim of one query ``(n_q, D)`` against ``pages`` -> ``(n_pages,)`` float32 numpy.

    On the CPU by :func:`token_max_pages` (block by block, float16 pages read in place); on a GPU the
    pages are concatenated, moved once and scored by :func:`token_max`.
    """
    dev = torch.device(device) if device is not None else default_device()
    with torch.inference_mode():
        q = as_tensor(query)
        if not pages:
            return np.zeros(0, dtype=np.float32)
        if dev.type == "cpu":
            return token_max_pages(q, pages).sum(axis=0)
        lengths = torch.tensor([p.shape[0] for p in pages])
        tokens = torch.from_numpy(np.concatenate([np.asarray(p, dtype=np.float32) for p in pages])).to(dev)
        return token_max(q.to(dev), tokens, lengths).sum(dim=0).cpu().numpy()


def to_numpy_list(vectors: Any) -> list[np.ndarray]:
    """A list of float32 numpy ``(n_tokens, dim)`` arrays from arrays, tensors or nested lists."""
    out = []
    for item in vectors:
        if isinstance(item, torch.Tensor):
            item = item.detach().to("cpu", torch.float32).numpy()
        arr = np.asarray(item, dtype=np.float32)
        if arr.ndim != 2:
            raise ValueError(f"a multi-vector must be 2-D (n_tokens, dim), got shape {arr.shape}")
        out.append(arr)
    return out
