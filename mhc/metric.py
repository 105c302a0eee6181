"""Distances between the files of a collection: which pairs may link, and how far apart.

A *metric* answers three questions for a clusterer, the report and ``mhc pairs``:
``edges(radius)`` (every pair that may link within ``radius``, block by block),
``between(i, j)`` (the distance of given pairs) and ``matrix(members)`` (all pairwise
distances of a few files). Pairs that may never link get :data:`BIG`.

:class:`HashMetric` is one algorithm's Hamming distance with the media rules: images
with images (the least over rotations and mirrors with isometric matching); videos with
videos, by the per-bit majority of their frame hashes or the median of time-aligned frame
distances, never across very different durations or picture shapes; an image with a
video only with ``cross_media``, by its nearest frame. :class:`CombinedMetric` is
combined evidence: a pair is as far as the largest share of its threshold that any of
several algorithms needs.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from .events import Progress, report
from .pairs import Edges, cross_distances, hamming, iter_pairs, pack

BIG = 1 << 30  # the distance of a pair that may never link
VideoMatch = Literal["majority", "frames"]


@dataclass(frozen=True)
class MatchOptions:
    cross_media: bool = False
    video_match: VideoMatch = "majority"
    duration_tolerance: float = 0.05  # fraction of the longer video; 0 turns the gate off
    duration_slack: float = 1.5  # seconds always allowed (a trimmed second, a remux's padding)
    aspect_tolerance: float = 0.1  # relative difference of the picture's shape without bars


class Metric(Protocol):
    n: int
    unit: Literal["bits", "%"]
    max_distance: int

    def edges(self, radius: int, progress: Progress | None = None) -> Iterator[Edges]: ...

    def between(self, i: np.ndarray, j: np.ndarray) -> np.ndarray: ...

    def matrix(self, members: np.ndarray) -> np.ndarray: ...


def majority(frame_hashes: bytes, nbytes: int) -> bytes:
    """Per-bit majority of a video's concatenated frame hashes (ties -> 0)."""
    a = np.frombuffer(frame_hashes, dtype=np.uint8).reshape(-1, nbytes)
    bits = np.unpackbits(a, axis=1)
    return np.packbits(bits.sum(axis=0) * 2 > len(a)).tobytes()


class HashMetric:
    """One algorithm's distances over a collection, with the media rules (module docstring).

    ``codes``: (n, words) packed hashes (a video's: the majority of its frames);
    ``frames``: video index -> (frames, words); ``meta``: video index -> duration, aspect;
    ``variants``: (n, 8, words) hashes of each image's 8 rotations/mirrors (identity first).
    """

    unit: Literal["bits", "%"] = "bits"

    def __init__(self, codes: np.ndarray, bits: int, is_video: np.ndarray | None = None,
                 frames: dict[int, np.ndarray] | None = None, meta: dict[int, dict] | None = None,
                 match: MatchOptions = MatchOptions(), variants: np.ndarray | None = None, label: str = "",
                 excluded: np.ndarray | None = None, links: Edges | None = None):
        self.codes = codes
        self.n = len(codes)
        self.max_distance = bits
        self.is_video = np.zeros(self.n, dtype=bool) if is_video is None else is_video
        self.frames = frames or {}
        self.meta = meta or {}
        self.match = match
        self.variants = variants
        self.label = label
        # files whose hash is not reliable (PDQ quality too low): never linked, at any distance
        self.excluded = np.zeros(self.n, dtype=bool) if excluded is None else excluded
        # pairs confirmed by other evidence (mhc.crops): at distance 0, whatever their hashes
        self.links = links if links is not None and len(links) else None
        self._link_keys = None if self.links is None else np.sort(self.links.i * self.n + self.links.j)
        self._img = np.flatnonzero(~self.is_video & ~self.excluded)
        self._vid = np.flatnonzero(self.is_video)
        self._duration = np.array([self.meta.get(k, {}).get("duration", 0.0) for k in range(self.n)])
        self._aspect = np.array([self.meta.get(k, {}).get("aspect", 0.0) for k in range(self.n)])

    def fingerprint(self) -> str:
        """A digest of everything the pairs of this metric depend on (codes, media kinds,
        exclusions, variants, video frames and metadata, matching options): equal
        fingerprints give equal edges at every radius."""
        import hashlib
        import json

        h = hashlib.sha256(f"{self.n}|{self.max_distance}|{self.match!r}".encode())
        for a in (self.codes, self.is_video, self.excluded, self.variants, self._link_keys):
            if a is not None:
                h.update(np.ascontiguousarray(a).tobytes())
                h.update(str(a.shape).encode())
        for k in sorted(self.frames):
            h.update(k.to_bytes(8, "little"))
            h.update(np.ascontiguousarray(self.frames[k]).tobytes())
        h.update(json.dumps(self.meta, sort_keys=True, default=str).encode())
        return h.hexdigest()[:32]

    # -- pairs within a radius ------------------------------------------------------
    def edges(self, radius: int, progress: Progress | None = None) -> Iterator[Edges]:
        img, vid = self._img, self._vid
        if self.links is not None:
            yield self.links
        if len(img) > 1 and self.variants is not None:
            yield from _isometric_edges(self.codes, self.variants, radius, img)
        elif len(img) > 1:
            step = (lambda done, total: report(progress, "pairs", done, total, self.label)) if progress else None
            for b in iter_pairs(self.codes[img], radius, progress=step):
                yield Edges(img[b.i], img[b.j], b.d)
        if len(vid) > 1:
            if self.match.video_match == "frames":
                e = self._frame_sequence_edges(radius)
            else:
                e = Edges.concat([Edges(vid[b.i], vid[b.j], b.d) for b in iter_pairs(self.codes[vid], radius)])
            yield self._gate(e)
        if self.match.cross_media and len(vid) and len(img):
            yield self._cross_edges(radius)

    def edges_within(self, radius: int) -> Edges:
        """Every pair within ``radius``, each once with its least distance, closest first."""
        return Edges.concat(list(self.edges(radius))).least().sorted()

    # -- distances of given pairs ----------------------------------------------------
    def between(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        i, j = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
        out = np.full(len(i), BIG, dtype=np.int64)
        vi, vj = self.is_video[i], self.is_video[j]
        images = ~vi & ~vj
        if images.any():
            a, b = i[images], j[images]
            d = hamming(self.codes[a], self.codes[b])
            if self.variants is not None:
                d = np.minimum(d, hamming(self.variants[a], self.codes[b][:, None, :]).min(axis=1))
                d = np.minimum(d, hamming(self.variants[b], self.codes[a][:, None, :]).min(axis=1))
            out[images] = d
        out[images & (self.excluded[i] | self.excluded[j])] = BIG
        for k in np.flatnonzero(vi & vj):
            out[k] = self._video_distance(int(i[k]), int(j[k]))
        if self.match.cross_media:
            for k in np.flatnonzero(vi ^ vj):
                v, im = (int(i[k]), int(j[k])) if vi[k] else (int(j[k]), int(i[k]))
                out[k] = int(hamming(self.frames[v], self.codes[im]).min())
        if self._link_keys is not None:
            out[self._linked(i, j)] = 0
        out[i == j] = 0
        return out

    def _linked(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Whether each pair (any shape, element by element) is a confirmed link."""
        key = np.minimum(i, j) * self.n + np.maximum(i, j)
        pos = np.minimum(np.searchsorted(self._link_keys, key), len(self._link_keys) - 1)
        return self._link_keys[pos] == key

    def matrix(self, members: np.ndarray) -> np.ndarray:
        members = np.asarray(members, dtype=np.int64)
        if self.variants is None and not self.is_video[members].any():
            d = cross_distances(self.codes[members], self.codes[members]).astype(np.int64)
            flat = self.excluded[members]
            if flat.any():  # a hash too unreliable to link is far from everything but itself
                d[flat, :] = BIG
                d[:, flat] = BIG
                np.fill_diagonal(d, 0)
            if self._link_keys is not None:  # confirmed crops: 0 apart
                d[self._linked(members[:, None], members[None, :])] = 0
            return d
        m = len(members)
        out = np.zeros((m, m), dtype=np.int64)
        iu, ju = np.triu_indices(m, k=1)
        for s in range(0, len(iu), 1 << 20):  # bounded memory for large components
            d = self.between(members[iu[s:s + (1 << 20)]], members[ju[s:s + (1 << 20)]])
            out[iu[s:s + (1 << 20)], ju[s:s + (1 << 20)]] = d
        return out + out.T

    # -- videos -------------------------------------------------------------------
    def _video_distance(self, a: int, b: int) -> int:
        if not self._gate_ok(a, b):
            return BIG
        if self.match.video_match == "frames":
            fa, fb = self.frames[a], self.frames[b]
            k = min(len(fa), len(fb))
            return int(np.floor(np.median(hamming(fa[:k], fb[:k])))) if k else BIG
        return int(hamming(self.codes[a], self.codes[b]))

    def _gate_ok(self, a: int, b: int) -> bool:
        e = self._gate(Edges(np.array([min(a, b)]), np.array([max(a, b)]), np.zeros(1, dtype=np.int32)))
        return len(e) == 1

    def _gate(self, e: Edges) -> Edges:
        """Drop video pairs of very different durations or picture shapes."""
        if not len(e):
            return e
        keep = np.ones(len(e), dtype=bool)
        dur, asp = self._duration, self._aspect
        if self.match.duration_tolerance > 0:
            da, db = dur[e.i], dur[e.j]
            allowed = np.maximum(self.match.duration_tolerance * np.maximum(da, db), self.match.duration_slack)
            keep &= np.abs(da - db) <= allowed
        if self.match.aspect_tolerance > 0:
            aa, ab = asp[e.i], asp[e.j]
            ok = (aa > 0) & (ab > 0)
            keep &= ~ok | (np.abs(aa - ab) <= self.match.aspect_tolerance * np.maximum(aa, ab))
        return Edges(e.i[keep], e.j[keep], e.d[keep])

    def _frame_sequence_edges(self, radius: int) -> Edges:
        """Median Hamming distance of time-aligned frames (frame k with frame k)."""
        vid = self._vid
        n_frames = max(len(self.frames[v]) for v in vid)
        words = self.codes.shape[1]
        F = np.zeros((len(vid), n_frames, words), dtype=np.uint64)
        valid = np.zeros((len(vid), n_frames), dtype=bool)
        for r, v in enumerate(vid):
            f = self.frames[v]
            F[r, : len(f)] = f
            valid[r, : len(f)] = True
        parts = []
        block = max(1, (1 << 22) // max(1, len(vid) * n_frames))
        for s in range(0, len(vid), block):
            d = hamming(F[s:s + block, None, :, :], F[None, :, :, :]).astype(np.float32)  # (B, V, N)
            d[~(valid[s:s + block, None, :] & valid[None, :, :])] = np.nan
            with np.errstate(all="ignore"):
                med = np.nanmedian(d, axis=2)
            rows, cols = np.nonzero(np.nan_to_num(med, nan=np.inf) <= radius)
            rows = rows + s
            upper = cols > rows
            parts.append(Edges(vid[rows[upper]], vid[cols[upper]],
                               np.floor(med[rows[upper] - s, cols[upper]]).astype(np.int32)))
        return Edges.concat(parts)

    def _cross_edges(self, radius: int) -> Edges:
        """Video-image pairs: the least distance between the image and any of the video's frames."""
        parts = []
        icodes = self.codes[self._img]
        for v in self._vid:
            d = cross_distances(self.frames[v], icodes).min(axis=0)
            hit = np.flatnonzero(d <= radius)
            if len(hit):
                other = self._img[hit]
                parts.append(Edges(np.minimum(other, v), np.maximum(other, v), d[hit].astype(np.int32)))
        return Edges.concat(parts)


def _isometric_edges(codes: np.ndarray, variants: np.ndarray, radius: int, allowed: np.ndarray,
                     block_elems: int = 1 << 22) -> Iterator[Edges]:
    """Pairs whose least distance over the 8 dihedral variants is within ``radius``:
    d(a, b) = min over k of min(d(T_k a, b), d(a, T_k b)), so it is symmetric."""
    base = codes[allowed]
    var = variants[allowed]
    m = len(allowed)
    rows = max(1, block_elems // max(1, m * 8))
    for s in range(0, m, rows):
        e = min(m, s + rows)
        q = var[s:e].reshape(-1, var.shape[2])  # (rows*8, words)
        d = cross_distances(q, base).reshape(e - s, 8, m).min(axis=1)
        r, c = np.nonzero(d <= radius)
        keep = (r + s) != c
        i, j = allowed[r[keep] + s], allowed[c[keep]]
        # (a, b) and (b, a) both appear: the forest keeps the least distance of a pair
        yield Edges(np.minimum(i, j), np.maximum(i, j), d[r[keep], c[keep]].astype(np.int32))


class CombinedMetric:
    """Combined evidence: a pair may link only where every algorithm is within its
    threshold; its distance is the largest share of its threshold any algorithm needs, in
    percent (0-100), so one sweep over 25/50/75/100 % covers them all."""

    unit: Literal["bits", "%"] = "%"
    max_distance = 100

    def __init__(self, parts: list[tuple[HashMetric, int]]):
        self.parts = parts
        self.n = parts[0][0].n

    @staticmethod
    def _pct(d: np.ndarray, t: int) -> np.ndarray:
        d = np.asarray(d, dtype=np.int64)
        if t == 0:
            return np.where(d == 0, 0, BIG)
        return np.where(d >= BIG, BIG, -(-100 * d // t))  # ceil, in integers

    def between(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return np.max([self._pct(m.between(i, j), t) for m, t in self.parts], axis=0)

    def matrix(self, members: np.ndarray) -> np.ndarray:
        return np.max([self._pct(m.matrix(members), t) for m, t in self.parts], axis=0)

    def edges(self, radius: int, progress: Progress | None = None) -> Iterator[Edges]:
        first, t0 = self.parts[0]
        # candidates from the first algorithm, measured by all (cheap: only its pairs)
        for block in first.edges(math.floor(t0 * radius / 100), progress):
            if not len(block):
                continue
            d = self.between(block.i, block.j)
            keep = d <= radius
            yield Edges(block.i[keep], block.j[keep], d[keep].astype(np.int32))


def video_codes(values: list[bytes], kinds: list[str], nbytes: int) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Packed codes of a collection (a video's: the majority of its frames) and each
    video's frame codes."""
    codes, frames = [], {}
    for k, (h, kind) in enumerate(zip(values, kinds)):
        if kind == "video":
            codes.append(majority(h, nbytes))
            frames[k] = pack([h[s:s + nbytes] for s in range(0, len(h), nbytes)])
        else:
            codes.append(h)
    return pack(codes), frames
