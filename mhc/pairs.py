"""Packed hashes -> pairs of files within a Hamming distance.

Never a Python loop over pairs: the all-pairs distance matrix is computed in row
blocks with numpy (XOR of 64-bit words, ``np.bitwise_count``), so memory stays bounded
by the block, and only pairs within ``max_distance`` leave a block.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Edges:
    """Pairs ``(i[k], j[k])`` with ``i < j`` and Hamming distance ``d[k]``."""

    i: np.ndarray
    j: np.ndarray
    d: np.ndarray

    def __len__(self) -> int:
        return len(self.d)

    @classmethod
    def empty(cls) -> "Edges":
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z.copy(), np.zeros(0, dtype=np.int32))

    @classmethod
    def concat(cls, parts: list["Edges"]) -> "Edges":
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("i", "j", "d")))

    def sorted(self) -> "Edges":
        """By distance, then i, then j: a deterministic order."""
        order = np.lexsort((self.j, self.i, self.d))
        return Edges(self.i[order], self.j[order], self.d[order])

    def within(self, threshold: int) -> "Edges":
        m = self.d <= threshold
        return Edges(self.i[m], self.j[m], self.d[m])


def pack(hashes: list[bytes]) -> np.ndarray:
    """Packed hashes (equal lengths) -> ``(n, words)`` uint64 array, zero-padded."""
    n = len(hashes)
    nbytes = len(hashes[0]) if n else 8
    width = -(-nbytes // 8) * 8
    buf = np.zeros((n, width), dtype=np.uint8)
    if n:
        buf[:, :nbytes] = np.frombuffer(b"".join(hashes), dtype=np.uint8).reshape(n, nbytes)
    return buf.view(np.uint64).reshape(n, width // 8)


def distances(codes: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    """Hamming distances between ``codes[rows]`` and ``codes[cols]`` (a 2-D block)."""
    a = codes[rows]
    b = codes[cols]
    out = np.zeros((a.shape[0], b.shape[0]), dtype=np.uint16)
    for w in range(codes.shape[1]):
        out += np.bitwise_count(a[:, w, None] ^ b[None, :, w])
    return out


def iter_pairs(codes: np.ndarray, max_distance: int, *, block_elems: int = 1 << 22) -> Iterator[Edges]:
    """Yield every pair ``i < j`` with distance ``<= max_distance``, block by block.

    Memory is O(block_elems + pairs of one block); the total number of pairs is never held.
    """
    n = codes.shape[0]
    start = 0
    while start < n:
        rows = max(1, min(n - start, block_elems // max(1, n - start)))
        stop = start + rows
        dist = distances(codes, slice(start, stop), slice(start, n))
        # only the upper triangle: column c (absolute start + c) must exceed the row
        ok = dist <= max_distance
        ok &= np.arange(n - start)[None, :] > np.arange(rows)[:, None]
        # ravel().nonzero() is ~30x faster than nonzero on a 2-D mask
        flat = ok.ravel().nonzero()[0]
        if len(flat):
            r, c = np.divmod(flat, n - start)
            yield Edges((r + start).astype(np.int64), (c + start).astype(np.int64),
                        dist.ravel()[flat].astype(np.int32))
        start = stop


def find_pairs(codes: np.ndarray, max_distance: int) -> Edges:
    """All pairs within ``max_distance``, sorted by distance (for listing, not for sweeps)."""
    return Edges.concat(list(iter_pairs(codes, max_distance))).sorted()
