"""Crop matching: a cropped copy found by window hashes and confirmed by its pixels.

No global perceptual hash sees a crop: cut a quarter off a picture and its hash is as far
from the original's as a stranger's. So each image also gets

- *window hashes*: a 64-bit pHash of the whole picture and of windows a crop typically
  keeps (centred 90 % and 80 %, and the largest 16:9, 4:3, 1:1, 3:4 and 9:16 windows at
  five positions along the free side). A crop's whole-picture hash lies near one of its
  source's window hashes; each picture's nearest windows (a few per file, so the number
  of candidates grows with the files, not their square) are the candidates;
- a *verification thumbnail*: grey, 128 px on the long side, shape kept, and an RGB
  version of 32 px.

A candidate "B is a crop of A" is confirmed by its pixels (:mod:`mhc.cropcheck`: template
matching that must agree in structure, brightness and colour). Pictures too flat to carry
structure are never confirmed. A crop cannot hold more detail than its
source: a B that would have to be enlarged more than 2x (or any near-identical copy of B
in the collection, which shows how much detail B's picture really has) is not cut from
A; two renders of one artwork on canvases of other shapes are told apart this way.

Confirmed links join at distance 0 for every algorithm: the user sees them in every
threshold folder, and the report says "crop of …".
"""
from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

VERSION = 2  # part of the cache key: bump when windows or thumbnails change
THUMB_SIDE = 128  # verification thumbnail, long side
COLOR_SIDE = 32
DECODE_SIDE = 256  # short side the features are computed from (JPEG draft)
ASPECTS = (16 / 9, 4 / 3, 1.0, 3 / 4, 9 / 16)
POSITIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
WINDOWS = 1 + 2 + len(ASPECTS) * len(POSITIONS)  # whole picture first; padded with it

CANDIDATES = 3  # nearest files per picture
MAX_CANDIDATE_BITS = 26  # of 64: farther windows are not worth a look
CROP_AREA = 0.97  # below this share of its source's area a match is called a crop


@dataclass(frozen=True)
class CropFeatures:
    """One image's window hashes and verification thumbnails."""

    windows: np.ndarray  # (WINDOWS,) uint64, whole picture first
    grey: np.ndarray  # (h, w) uint8, long side THUMB_SIDE
    color: np.ndarray  # (h', w', 3) uint8, long side COLOR_SIDE


@dataclass(frozen=True)
class CropMatch:
    """``inner`` shows the window ``(x, y, w, h)`` of ``outer`` (fractions of outer's width
    and height), with these verification scores."""

    outer: int
    inner: int
    x: float
    y: float
    w: float
    h: float
    structure: float
    plain: float

    @property
    def area(self) -> float:
        """Share of ``outer``'s area that ``inner`` shows (1.0: the same picture)."""
        return self.w * self.h

    @property
    def is_crop(self) -> bool:
        return self.area < CROP_AREA


def window_boxes(width: int, height: int) -> list[tuple[float, float, float, float]]:
    """The windows hashed for a picture of this shape, as fractions (left, top, right,
    bottom); the whole picture first. Shapes within 10 % of the picture's own are skipped."""
    r = width / height
    boxes = [(0.0, 0.0, 1.0, 1.0), (0.05, 0.05, 0.95, 0.95), (0.1, 0.1, 0.9, 0.9)]
    for t in ASPECTS:
        if abs(t - r) / r <= 0.1:
            continue
        if t < r:  # narrower than the picture: full height
            fw = t / r
            boxes += [(p * (1 - fw), 0.0, p * (1 - fw) + fw, 1.0) for p in POSITIONS]
        else:
            fh = r / t
            boxes += [(0.0, p * (1 - fh), 1.0, p * (1 - fh) + fh) for p in POSITIONS]
    return boxes


def features(image: Image.Image) -> bytes:
    """An image's crop features, serialised for the cache (see :func:`parse`): the window
    hashes, then the grey thumbnail as PNG (lossless: JPEG blurred the faint texture of dark
    pictures and lost crops) and the colour one as JPEG; 3-7 KB per picture."""
    import cv2
    import imagehash

    rgb = image.convert("RGB")
    grey = rgb.convert("L")
    w, h = grey.size
    hashes = []
    for a, b, c, d in window_boxes(w, h):
        box = (round(a * w), round(b * h), max(round(a * w) + 1, round(c * w)), max(round(b * h) + 1, round(d * h)))
        hashes.append(int(str(imagehash.phash(grey.crop(box))), 16))
    hashes += [hashes[0]] * (WINDOWS - len(hashes))
    t = grey.copy()
    t.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.BILINEAR)
    c = rgb.copy()
    c.thumbnail((COLOR_SIDE, COLOR_SIDE), Image.BILINEAR)
    gj = cv2.imencode(".png", np.asarray(t), [cv2.IMWRITE_PNG_COMPRESSION, 6])[1].tobytes()
    cj = cv2.imencode(".jpg", np.asarray(c)[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
    return (struct.pack("<B", VERSION) + np.array(hashes, dtype=np.uint64).tobytes()
            + struct.pack("<II", len(gj), len(cj)) + gj + cj)


def parse_windows(blob: bytes) -> np.ndarray:
    """The window hashes of a :func:`features` blob, (WINDOWS,) uint64, whole picture first."""
    if len(blob) < 1 + 8 * WINDOWS or blob[0] != VERSION:
        raise ValueError("not a crop features blob of this version")
    return np.frombuffer(blob, dtype=np.uint64, count=WINDOWS, offset=1)


def parse(blob: bytes) -> CropFeatures:
    """The inverse of :func:`features` (decodes the thumbnails)."""
    import cv2

    windows = parse_windows(blob)
    o = 1 + 8 * WINDOWS
    gl, cl = struct.unpack_from("<II", blob, o)
    o += 8
    grey = cv2.imdecode(np.frombuffer(blob, dtype=np.uint8, count=gl, offset=o), cv2.IMREAD_GRAYSCALE)
    color = cv2.imdecode(np.frombuffer(blob, dtype=np.uint8, count=cl, offset=o + gl), cv2.IMREAD_COLOR)
    if grey is None or color is None:
        raise ValueError("damaged crop thumbnails")
    return CropFeatures(windows, grey, np.ascontiguousarray(color[:, :, ::-1]))


# -- candidates ---------------------------------------------------------------------------
def candidates(whole: np.ndarray, windows: np.ndarray, k: int = CANDIDATES, max_bits: int = MAX_CANDIDATE_BITS,
               budget: int = 1 << 24) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """For each picture (``whole``: (n,) uint64), the ``k`` other pictures with a window
    (``windows``: (n, W) uint64) nearest to it, within ``max_bits``: (outer, inner, window)
    to verify as "inner is outer's window, or a crop near it", block by block.

    Candidates grow as k per picture. The search compares every whole hash with every
    window: numpy blocks of ``budget`` distances for small collections, FAISS's flat binary
    k-nearest search (multi-threaded) from 20,000 pictures on."""
    from .pairs import FAISS_MIN_FILES, _faiss

    n, nw = windows.shape
    kk = min(k, n - 1)
    if kk <= 0:
        return
    faiss = _faiss() if n >= FAISS_MIN_FILES else None
    if faiss is not None:
        yield from _faiss_candidates(faiss, whole, windows, kk, max_bits)
        return
    flat = windows.reshape(-1)
    block = max(1, budget // (n * nw))
    for s in range(0, n, block):
        q = whole[s:s + block]
        d3 = np.bitwise_count(q[:, None] ^ flat[None, :]).reshape(len(q), n, nw)
        win = d3.argmin(axis=2)
        d = np.take_along_axis(d3, win[:, :, None], axis=2)[:, :, 0].astype(np.int16)
        d[np.arange(len(q)), np.arange(s, s + len(q))] = 99  # not itself
        near = np.argpartition(d, kk - 1, axis=1)[:, :kk]
        dist = np.take_along_axis(d, near, axis=1)
        inner = np.repeat(np.arange(s, s + len(q)), kk).reshape(len(q), kk)
        ok = dist <= max_bits
        yield near[ok].astype(np.int64), inner[ok].astype(np.int64), np.take_along_axis(win, near, axis=1)[ok]


def _faiss_candidates(faiss, whole: np.ndarray, windows: np.ndarray, k: int, max_bits: int
                      ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    n, nw = windows.shape
    index = faiss.IndexBinaryFlat(64)
    index.add(np.ascontiguousarray(windows.reshape(-1)).view(np.uint8).reshape(-1, 8))
    # the nearest rows may be several windows of one picture (and the picture itself)
    rows = min(len(windows.reshape(-1)), 4 * k * 2 + nw)
    queries = np.ascontiguousarray(whole).view(np.uint8).reshape(-1, 8)
    for s in range(0, n, 16384):
        D, I = index.search(queries[s:s + 16384], rows)
        outer, inner, win = [], [], []
        for r in range(len(D)):
            seen: set[int] = set()
            for dist, row in zip(D[r].tolist(), I[r].tolist()):
                f = row // nw
                if row < 0 or dist > max_bits or len(seen) == k:
                    break
                if f == s + r or f in seen:
                    continue
                seen.add(f)
                outer.append(f)
                inner.append(s + r)
                win.append(row % nw)
        yield np.array(outer, dtype=np.int64), np.array(inner, dtype=np.int64), np.array(win, dtype=np.int64)


def known_detail(whole: np.ndarray, widths: np.ndarray, heights: np.ndarray, radius: int = 4) -> np.ndarray:
    """For each picture, the most pixels across that any near-identical copy of it has
    (same shape within 2 %, whole-picture hashes within ``radius`` bits), scaled to its
    own shape: how much detail its picture is known in. The pairs come from mhc's pair
    search (FAISS multi-index hashing at scale), so memory stays O(pairs)."""
    from .pairs import iter_pairs

    out = widths.astype(np.int64).copy()
    aspect = widths / np.maximum(1, heights)
    codes = np.ascontiguousarray(whole, dtype=np.uint64).reshape(-1, 1)
    for e in iter_pairs(codes, radius):
        same = np.abs(aspect[e.i] - aspect[e.j]) <= 0.02 * np.maximum(aspect[e.i], aspect[e.j])
        i, j = e.i[same], e.j[same]
        np.maximum.at(out, i, widths[j])
        np.maximum.at(out, j, widths[i])
    return out


def find_matches(features: dict[int, bytes], widths: list[int], heights: list[int], workers: int = 0
                 ) -> list[CropMatch]:
    """Every confirmed crop or copy among the images whose ``features`` are given (index ->
    :func:`features` bytes; ``widths``/``heights``: every file's pixels, by index): each
    picture's nearest windows are verified; one match per pair, by index. Thumbnails are
    decoded as candidates need them (a few thousand at a time), not all at once."""
    import functools
    import os

    from .cropcheck import verify

    ids, wins = [], []
    for k in sorted(features):
        try:
            wins.append(parse_windows(features[k]))
            ids.append(k)
        except ValueError:  # another version's layout: the picture is just not matched
            continue
    if len(ids) < 2:
        return []
    windows = np.stack(wins)
    whole = np.ascontiguousarray(windows[:, 0])
    # a file whose pixels are unknown counts as 1 x 1: no crop of it is confirmed
    w = np.array([widths[k] or 1 for k in ids], dtype=np.int64)
    h = np.array([heights[k] or 1 for k in ids], dtype=np.int64)
    detail = known_detail(whole, w, h)

    @functools.lru_cache(maxsize=8192)  # thread-safe; holds ~50 MB at most
    def thumbs(r: int) -> CropFeatures | None:
        try:
            return parse(features[ids[r]])
        except (ValueError, struct.error):
            return None

    todo: dict[tuple[int, int], tuple[int, int, int]] = {}
    for outer, inner, win in candidates(whole, windows):
        for o, i, k in zip(outer.tolist(), inner.tolist(), win.tolist()):
            todo.setdefault((o, i), (o, i, k))  # both directions when both are candidates

    def check(job: tuple[int, int, int]) -> CropMatch | None:
        o, i, k = job
        fo, fi = thumbs(o), thumbs(i)
        if fo is None or fi is None:
            return None
        boxes = window_boxes(int(w[o]), int(h[o]))
        box = boxes[k] if k < len(boxes) else boxes[0]
        return verify(fo, fi, int(w[o]), int(detail[i]), (ids[o], ids[i]), near=box[2] - box[0])

    # OpenCV releases the GIL in its resizes, filters and template matches: threads share
    # the decoded thumbnails without copying them into processes
    from concurrent.futures import ThreadPoolExecutor

    jobs = [todo[k] for k in sorted(todo)]
    del todo
    found: dict[tuple[int, int], CropMatch] = {}
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as ex:
        # in slices: Executor.map makes a future per job up front (300,000 at 100,000 files)
        for s in range(0, len(jobs), 4096):
            for m in ex.map(check, jobs[s:s + 4096]):
                if m is not None:
                    found.setdefault((min(m.outer, m.inner), max(m.outer, m.inner)), m)
    return [found[k] for k in sorted(found)]


def matches_fingerprint(features: dict[int, bytes], widths: list[int], heights: list[int]) -> str:
    """A digest of everything :func:`find_matches` depends on (its settings included):
    equal fingerprints give equal matches."""
    import hashlib

    from .cropcheck import (MAX_CHROMA_GAP, MAX_ENLARGE, MIN_FRACTION, MIN_PLAIN, MIN_STRUCTURE, MIN_TEXTURE,
                            WHOLE_INLIERS)

    h = hashlib.blake2b(repr((VERSION, MIN_STRUCTURE, MIN_PLAIN, MAX_CHROMA_GAP, MIN_TEXTURE, MAX_ENLARGE,
                              CANDIDATES, MAX_CANDIDATE_BITS, MIN_FRACTION, WHOLE_INLIERS)).encode(), digest_size=16)
    for k in sorted(features):
        h.update(struct.pack("<qqqq", k, len(features[k]), widths[k] or 0, heights[k] or 0))
        h.update(features[k])
    return h.hexdigest()


def to_arrays(matches: list[CropMatch]) -> dict[str, np.ndarray]:
    """Matches as arrays (for :class:`mhc.clustering.ForestCache`)."""
    return {"pairs": np.array([[m.outer, m.inner] for m in matches], dtype=np.int64).reshape(-1, 2),
            "geometry": np.array([[m.x, m.y, m.w, m.h, m.structure, m.plain] for m in matches],
                                 dtype=np.float64).reshape(-1, 6)}


def arrays_whole(z: dict[str, np.ndarray], n: int) -> bool:
    """Whether stored arrays are matches of :func:`to_arrays` among ``n`` files."""
    p, g = z.get("pairs"), z.get("geometry")
    return (isinstance(p, np.ndarray) and isinstance(g, np.ndarray) and p.ndim == 2 and p.shape[1] == 2
            and p.dtype.kind in "iu" and g.shape == (len(p), 6) and g.dtype.kind == "f"
            and (not len(p) or (p.min() >= 0 and p.max() < n)))


def from_arrays(z: dict[str, np.ndarray]) -> list[CropMatch]:
    return [CropMatch(int(o), int(i), *map(float, g)) for (o, i), g in zip(z["pairs"], z["geometry"])]
