"""Packed hashes -> pairs of files within a Hamming distance.

Never a Python loop over pairs, and never the whole pair list in memory: pairs come out
block by block. The method is chosen per collection size, bits and radius:

- small collections: numpy, the distance matrix in row blocks (XOR of 64-bit words,
  ``np.bitwise_count``), no set-up cost;
- large collections: FAISS ``IndexBinaryFlat`` range search, multi-threaded
  (measured here: 2.6e9 pairs/s for 64-bit codes on 2 cores, 6x numpy on one);
- small radii (each of ``radius + 1`` code chunks still >= 16 bits): FAISS
  ``IndexBinaryMultiHash``, exact by the pigeonhole principle, which only verifies
  candidates sharing a whole chunk.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .errors import UsageError


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

    def least(self) -> "Edges":
        """Each pair once, with its least distance (the same pair can come from several
        isometric variants or blocks), ordered by i, then j."""
        order = np.lexsort((self.d, self.j, self.i))
        i, j, d = self.i[order], self.j[order], self.d[order]
        first = np.ones(len(i), dtype=bool)
        first[1:] = (i[1:] != i[:-1]) | (j[1:] != j[:-1])
        return Edges(i[first], j[first], d[first])

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
        joined = b"".join(hashes)  # its length catches a mix of algorithms without a loop over every hash
        if len(joined) != n * nbytes:
            raise UsageError(f"pack: hashes of different lengths (the first is {nbytes} bytes); "
                             f"pack the hashes of one algorithm")
        buf[:, :nbytes] = np.frombuffer(joined, dtype=np.uint8).reshape(n, nbytes)
    return buf.view(np.uint64).reshape(n, width // 8)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances of packed codes ``a[..., words]`` and ``b[..., words]``, element by
    element (leading axes broadcast). The one distance of mhc: every stage calls this or
    :func:`cross_distances`."""
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape[-1:] == b.shape[-1:]
            and a.dtype.kind == b.dtype.kind == "u"):
        # numpy would broadcast one word against four (a 64-bit code against a 256-bit one)
        # and answer a number: refused, as codes of two algorithms are not comparable
        raise UsageError(f"hamming: codes must be packed the same way (unsigned words, equal lengths); got "
                         f"{_shape(a)} and {_shape(b)}: compare the codes of one algorithm (see pack)")
    return np.bitwise_count(np.bitwise_xor(a, b)).sum(axis=-1, dtype=np.int32)


def _shape(x: object) -> str:
    return f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__


def hex_distance(a: str, b: str) -> int:
    """The distance of two hashes written as hex strings (summary.json's form)."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def cross_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """All distances between the rows of ``a`` (m, words) and ``b`` (k, words): (m, k).
    Word by word, so memory stays O(m k) whatever the hash length."""
    out = np.zeros((a.shape[0], b.shape[0]), dtype=np.uint16)
    for w in range(a.shape[1]):
        out += np.bitwise_count(a[:, w, None] ^ b[None, :, w])
    return out


def distances(codes: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    """Hamming distances between ``codes[rows]`` and ``codes[cols]`` (a 2-D block)."""
    return cross_distances(codes[rows], codes[cols])


def iter_pairs(
    codes: np.ndarray, max_distance: int, *, method: str = "auto", block_elems: int = 1 << 22,
    progress=None,
) -> Iterator[Edges]:
    """Yield every pair ``i < j`` with distance ``<= max_distance``, block by block.

    ``method``: "auto", "numpy", "faiss" (flat) or "multihash". Memory is O(block) plus
    the pairs of one block; the total number of pairs is never held.
    """
    n, words = codes.shape
    bits = words * 64
    if method == "auto":
        method = choose_method(n, bits, max_distance)
    if method in ("faiss", "multihash"):
        yield from _faiss_pairs(codes, max_distance, multihash=method == "multihash", progress=progress)
        return
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
        if progress:
            progress(start, n)


FAISS_MIN_FILES = 20_000


def _faiss():
    try:
        import faiss  # noqa: F401

        return faiss
    except ImportError:  # faiss-cpu has no wheel for this platform: numpy does the work
        return None


def choose_method(n: int, bits: int, radius: int) -> str:
    """numpy for small collections; FAISS multi-index hashing for small radii; FAISS flat else."""
    if n < FAISS_MIN_FILES or _faiss() is None:
        return "numpy"
    if bits // (radius + 1) >= 16:
        return "multihash"
    return "faiss"


def _faiss_pairs(codes: np.ndarray, radius: int, *, multihash: bool, progress=None) -> Iterator[Edges]:
    faiss = _faiss()
    n, words = codes.shape
    d = words * 64
    x = np.ascontiguousarray(codes).view(np.uint8).reshape(n, words * 8)
    # range_search keeps distances strictly below its radius: ask for radius + 1
    if multihash:
        nhash = radius + 1
        index = faiss.IndexBinaryMultiHash(d, nhash, d // nhash)
        index.nflip = 0  # pigeonhole: some chunk of a pair within radius matches exactly
        index.add(x)
        block = 65536
        for s in range(0, n, block):
            lims, D, I = index.range_search(x[s:s + block], radius + 1)
            yield _upper(lims, D, I, s)
            if progress:
                progress(min(n, s + block), n)
        return
    # Flat: query rows [s, s+B) against codes [s, n) only, so each pair is computed once;
    # blocks sized so one block's distance work is ~2e9 pairs (bounded result memory).
    block = int(min(65536, max(256, 2e9 // max(1, n))))
    for s in range(0, n, block):
        index = faiss.IndexBinaryFlat(d)
        index.add(x[s:])
        lims, D, I = index.range_search(x[s:s + block], radius + 1)
        e = _upper(lims, D, I - 0, 0, offset=s)
        yield e
        if progress:
            progress(min(n, s + block), n)


def _upper(lims, D, I, first_query: int, offset: int = 0) -> Edges:
    """FAISS range results -> Edges with i < j (queries start at ``first_query``; index ids
    shifted by ``offset``)."""
    counts = np.diff(lims).astype(np.int64)
    q = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    if offset:
        qi = q + offset
        j = I.astype(np.int64) + offset
    else:
        qi = q + first_query
        j = I.astype(np.int64)
    keep = j > qi
    return Edges(qi[keep], j[keep], D[keep].astype(np.int32))


def find_pairs(codes: np.ndarray, max_distance: int) -> Edges:
    """All pairs within ``max_distance``, sorted by distance (for listing, not for sweeps)."""
    return Edges.concat(list(iter_pairs(codes, max_distance))).sorted()
