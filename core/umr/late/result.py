"""The typed result of a multi-vector (late-interaction) embedder."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

import numpy as np


class MultiVectors(Sequence[np.ndarray]):
    """One float32 ``(n_tokens, dim)`` array per input, in input order.

    A sequence of arrays (index it, iterate it, ``len`` it), never a silently reshaped matrix: a model
    that gives several vectors per input says so in its result type. ``n_tokens`` differs per input.
    """

    __slots__ = ("_arrays", "dim")

    def __init__(self, arrays: Sequence[np.ndarray], dim: int | None = None) -> None:
        arrays = [np.asarray(a, dtype=np.float32) for a in arrays]
        for k, a in enumerate(arrays):
            if a.ndim != 2:
                raise ValueError(f"multi-vector #{k} must be 2-D (n_tokens, dim), got shape {a.shape}")
        dims = {a.shape[1] for a in arrays}
        if len(dims) > 1:
            raise ValueError(f"multi-vectors must share one dim, got {sorted(dims)}")
        self._arrays = arrays
        self.dim = int(dims.pop()) if dims else int(dim or 0)

    def __len__(self) -> int:
        return len(self._arrays)

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, index: slice) -> MultiVectors: ...

    def __getitem__(self, index: int | slice) -> np.ndarray | MultiVectors:
        if isinstance(index, slice):
            return MultiVectors(self._arrays[index], self.dim)
        return self._arrays[index]

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self._arrays)

    @property
    def n_tokens(self) -> list[int]:
        return [a.shape[0] for a in self._arrays]

    @property
    def shape(self) -> tuple[int, None, int]:
        """``(n_inputs, None, dim)``: the token axis has no single length."""
        return (len(self._arrays), None, self.dim)

    def __array__(self, *args: object, **kwargs: object) -> np.ndarray:
        raise TypeError(
            "a multi-vector result holds one (n_tokens, dim) array per input, with different n_tokens; it is "
            "not one matrix. Index it (result[i]), or score it with umr.late.maxsim / model.score"
        )

    def tolist(self) -> list[list[list[float]]]:
        return [a.tolist() for a in self._arrays]

    def __repr__(self) -> str:
        return f"MultiVectors(n={len(self)}, dim={self.dim}, n_tokens={self.n_tokens})"
