"""Token pooling by hierarchical (Ward) clustering, to cut the number of stored page vectors.

The clustering follows colpali-engine's hierarchical token pooler: each token is described by its row of
cosine distances to the page's other tokens (``1 - E E^T``), tokens are clustered by Ward linkage on the
Euclidean distance between those rows, the dendrogram is cut at ``max(n_tokens // pool_factor, 1)``
clusters, and each cluster becomes the L2-normalised mean of its tokens.

The linkage is computed here (no scipy): agglomerative Ward with Lance-Williams updates and a cached
nearest neighbour per row, vectorised over a batch of pages in torch. Cutting a Ward dendrogram at ``k``
clusters is the partition after ``n - k`` merges (Ward merge heights are monotone), so the merges simply
stop there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from umr.late.scoring import MultiVector, as_tensor

#: pages whose padded pairwise-distance blocks exceed this many float32 entries are split into smaller batches
_MAX_BATCH_ENTRIES = 24 * 1024 * 1024


def n_clusters(n_tokens: int, pool_factor: int) -> int:
    """How many vectors a page of ``n_tokens`` keeps: ``max(n_tokens // pool_factor, 1)``."""
    return max(n_tokens // pool_factor, 1)


def _ward_distances(embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances between the rows of ``1 - E E^T`` per page, ``(B, n, n)`` float64.

    ``||S_i - S_j||^2 = G_ii + G_jj - 2 G_ij`` with ``G = S S^T = E (E^T E) E^T`` (padded tokens are zero
    rows of E, so they add nothing to the real rows).
    """
    emb = embeddings.to(torch.float32) * mask[..., None]
    gram_small = emb.transpose(1, 2) @ emb  # (B, d, d)
    gram = emb @ gram_small @ emb.transpose(1, 2)  # (B, n, n)
    diag = torch.diagonal(gram, dim1=1, dim2=2)
    dist = (diag[:, :, None] + diag[:, None, :] - 2 * gram).clamp_min_(0.0)
    return dist


def ward_labels(embeddings: torch.Tensor, mask: torch.Tensor, n_keep: torch.Tensor) -> torch.Tensor:
    """Cluster labels ``(B, n)`` (a representative token index per token, -1 for padding) of a Ward cut.

    ``embeddings`` ``(B, n, d)`` padded, ``mask`` ``(B, n)`` bool, ``n_keep`` ``(B,)`` clusters to keep.
    """
    bsz, n, _ = embeddings.shape
    dev = embeddings.device
    inf = torch.tensor(float("inf"), dtype=torch.float32, device=dev)
    dist = _ward_distances(embeddings, mask)
    valid_pair = mask[:, :, None] & mask[:, None, :]
    eye = torch.eye(n, dtype=torch.bool, device=dev)[None]
    dist = torch.where(valid_pair & ~eye, dist, inf)
    sizes = mask.to(torch.float32)
    labels = torch.where(mask, torch.arange(n, device=dev)[None, :].expand(bsz, n), -1)
    nn_val, nn_idx = dist.min(dim=2)  # (B, n)
    lengths = mask.sum(dim=1)
    merges_left = (lengths - n_keep).clamp_min(0)
    batch = torch.arange(bsz, device=dev)
    cols = torch.arange(n, device=dev)
    for _ in range(int(merges_left.max().item()) if bsz else 0):
        active = merges_left > 0
        i = nn_val.argmin(dim=1)  # row holding the closest pair, (B,)
        j = nn_idx[batch, i]
        d_ij = dist[batch, i, j]
        s_i, s_j = sizes[batch, i], sizes[batch, j]
        s_k = sizes
        total = s_i[:, None] + s_j[:, None] + s_k
        new_row = ((s_i[:, None] + s_k) * dist[batch, i] + (s_j[:, None] + s_k) * dist[batch, j]
                   - s_k * d_ij[:, None]) / total.clamp_min(1.0)
        dead = (s_k == 0) | (cols[None, :] == i[:, None]) | (cols[None, :] == j[:, None])
        new_row = torch.where(dead, inf, new_row)
        # apply only on pages that still merge
        a = batch[active]
        ia, ja = i[active], j[active]
        dist[a, ia, :] = new_row[active]
        dist[a, :, ia] = new_row[active]
        dist[a, ja, :] = inf
        dist[a, :, ja] = inf
        sizes[a, ia] = s_i[active] + s_j[active]
        sizes[a, ja] = 0.0
        labels[a] = torch.where(labels[a] == ja[:, None], ia[:, None], labels[a])
        # nearest-neighbour cache: only rows that pointed at i or j (and i itself) can change;
        # Ward is reducible, so no other row's nearest distance drops below its cached value
        dirty = ((nn_idx == i[:, None]) | (nn_idx == j[:, None]) | (cols[None, :] == i[:, None])) & active[:, None]
        nn_val[a, ja] = inf
        dirty[a, ja] = False
        rows = dirty.nonzero(as_tuple=True)
        if rows[0].numel():
            sub = dist[rows[0], rows[1]]
            val, idx = sub.min(dim=1)
            nn_val[rows] = val
            nn_idx[rows] = idx
        merges_left = merges_left - active.to(merges_left.dtype)
    return labels


def _pool_batch(tensors: list[torch.Tensor], pool_factor: int) -> list[torch.Tensor]:
    lengths = [t.shape[0] for t in tensors]
    padded = torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True)
    mask = torch.arange(padded.shape[1])[None, :] < torch.tensor(lengths)[:, None]
    n_keep = torch.tensor([n_clusters(n, pool_factor) for n in lengths])
    labels = ward_labels(padded, mask, n_keep)
    out = []
    for row, emb in enumerate(tensors):
        lab = labels[row, : emb.shape[0]]
        uniq, inverse = torch.unique(lab, return_inverse=True)
        sums = torch.zeros((uniq.shape[0], emb.shape[1]), dtype=torch.float32).index_add_(0, inverse, emb)
        out.append(torch.nn.functional.normalize(sums, p=2, dim=-1))
    return out


def pool_tokens(items: Sequence[MultiVector], pool_factor: int) -> list[np.ndarray]:
    """Pool each page's tokens to ``max(n // pool_factor, 1)`` L2-normalised cluster means (float32).

    ``pool_factor`` 1 returns the tokens unchanged. Pages are processed in batches of similar length so
    the per-merge work is vectorised across pages.
    """
    if not isinstance(pool_factor, int) or isinstance(pool_factor, bool) or pool_factor < 1:
        raise ValueError(f"pool_factor must be an int >= 1, got {pool_factor!r}")
    tensors = [as_tensor(item, "cpu") for item in items]
    if pool_factor == 1:
        return [t.numpy() for t in tensors]
    result: list[np.ndarray | None] = [None] * len(tensors)
    order = sorted(range(len(tensors)), key=lambda k: tensors[k].shape[0])
    start = 0
    with torch.inference_mode():
        while start < len(order):
            longest = tensors[order[start]].shape[0]
            stop = start + 1
            while stop < len(order):
                longest = max(longest, tensors[order[stop]].shape[0])
                if (stop - start + 1) * longest * longest > _MAX_BATCH_ENTRIES:
                    break
                stop += 1
            chunk = order[start:stop]
            for k, pooled in zip(chunk, _pool_batch([tensors[k] for k in chunk], pool_factor)):
                result[k] = pooled.numpy()
            start = stop
    return [r for r in result if r is not None]
