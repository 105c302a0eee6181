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

A candidate "B is a crop of A" is confirmed by template matching (OpenCV's normalised
cross-correlation), B scaled uniformly to every size that fits inside A: the best match
must agree in structure (the high-pass images, which a smooth gradient does not fool), in
brightness (the plain images) and in colour where both pictures have colour. Pictures
too flat to carry structure are never confirmed. A crop cannot hold more detail than its
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

# Measured on four labelled corpora (docs/benchmarks.md): true crops and copies score
# >= 0.6 / 0.95 after refinement; look-alike wallpapers of one theme, smooth gradients
# and colour variants fail one of the three.
MIN_STRUCTURE = 0.5  # NCC of the high-pass images
MIN_PLAIN = 0.9  # NCC of the grey images
MAX_CHROMA_GAP = 12.0  # mean |a*|,|b*| difference (CIELAB units) where both have colour
MIN_TEXTURE = 1.0  # std of the high-pass template (grey levels): below it, too flat
MAX_ENLARGE = 2.0
WHOLE_INLIERS = 0.8  # share of pixels that must agree when whole pictures are compared
CANDIDATES = 3  # nearest files per picture
MAX_CANDIDATE_BITS = 26  # of 64: farther windows are not worth a look
MIN_FRACTION = 0.25  # a crop keeps at least a quarter of its source's width or height
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
    hashes, then both thumbnails as JPEG (quality 92: a quarter of the raw bytes, so 100,000
    pictures hold ~0.4 GB; the verification scores move by < 0.01)."""
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
    q = [cv2.IMWRITE_JPEG_QUALITY, 92]
    gj = cv2.imencode(".png", np.asarray(t), [cv2.IMWRITE_PNG_COMPRESSION, 6])[1].tobytes()
    cj = cv2.imencode(".jpg", np.asarray(c)[:, :, ::-1], q)[1].tobytes()
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


# -- verification -------------------------------------------------------------------------
def _highpass(a: np.ndarray) -> np.ndarray:
    import cv2

    return a - cv2.GaussianBlur(a, (0, 0), 2.0)


def _chroma(rgb: np.ndarray) -> np.ndarray:
    import cv2

    lab = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    return lab[..., 1:]


def verify(outer: CropFeatures, inner: CropFeatures, outer_width: int, inner_detail: int,
           ids: tuple[int, int] = (0, 1), near: float | None = None) -> CropMatch | None:
    """Whether ``inner`` is ``outer`` cut (and uniformly scaled): the match, or None.
    ``ids``: the (outer, inner) indices recorded in the match. ``outer_width``: outer's pixels
    across; ``inner_detail``: the most pixels across that inner's picture is known in;
    ``near``: the share of outer's width of the window that found the pair (the search
    tries scales within 30 % of it first, then every scale at half the density), else
    every scale."""
    A = outer.grey.astype(np.float32)
    B = inner.grey.astype(np.float32)
    HA = _highpass(A)
    least = max(MIN_FRACTION, inner_detail / (MAX_ENLARGE * max(1, outer_width)), 12 / A.shape[1])
    lo, hi = (least, 1.0) if near is None else (max(least, near / 1.3), min(1.0, near * 1.3))
    found = _search(A, HA, B, outer, inner, lo, hi, ids) if lo <= hi else None
    if found is None and near is not None:  # the nearest window can mislead: every scale, coarser
        found = _search(A, HA, B, outer, inner, least, 1.0, ids, step=0.04)
    if found is not None:
        return found
    # not a crop: the whole picture, edited (a watermark, a logo) or stretched to another shape
    whole = _whole(A, HA, B, outer, inner) if inner_detail <= MAX_ENLARGE * outer_width else None
    return None if whole is None else CropMatch(ids[0], ids[1], 0.0, 0.0, 1.0, 1.0, *whole)


def _search(A: np.ndarray, HA: np.ndarray, B: np.ndarray, outer: CropFeatures, inner: CropFeatures, least: float,
            most: float, ids: tuple[int, int], step: float = 0.02) -> CropMatch | None:
    """The best placement of ``B``, uniformly scaled, inside ``A``, if it passes the three
    checks. Scales are scanned on half-size images (a sixth of the time: almost every
    candidate is a stranger), then the best one is refined at full size near its place."""
    import cv2

    ha, wa = A.shape
    hb, wb = B.shape
    A2 = cv2.resize(A, (max(1, wa // 2), max(1, ha // 2)), interpolation=cv2.INTER_AREA)
    B2 = cv2.resize(B, (max(1, wb // 2), max(1, hb // 2)), interpolation=cv2.INTER_AREA)
    HA2 = A2 - cv2.GaussianBlur(A2, (0, 0), 1.0)
    h2a, w2a = A2.shape

    def size(f: float, width: int, height: int) -> tuple[int, int] | None:
        w = int(round(f * width))
        h = int(round(w * hb / wb))
        if h > height:
            if h > height + 1:
                return None
            h = height
        return (w, h) if 0 < w <= width else None

    best = None
    for f in np.arange(most, least - 1e-9, -step):
        wh = size(float(f), w2a, h2a)
        if wh is None or min(wh) < 8:
            continue
        t = cv2.resize(B2, wh, interpolation=cv2.INTER_AREA)
        ht = t - cv2.GaussianBlur(t, (0, 0), 1.0)
        if cv2.meanStdDev(ht)[1][0, 0] < MIN_TEXTURE / 4:  # smoother at half size; checked at full size below
            continue
        _, m, _, loc = cv2.minMaxLoc(cv2.matchTemplate(HA2, ht, cv2.TM_CCOEFF_NORMED))
        if best is None or m > best[0]:
            best = (m, float(f), loc)
    if best is None or best[0] < MIN_STRUCTURE - 0.2:
        return None
    _, fc, (xc, yc) = best
    best = None
    for f in np.arange(fc - 0.03, fc + 0.0301, 0.005):  # refine at full size, near the coarse place
        if f < least - 1e-9 or f > most + 1e-9:
            continue
        wh = size(float(f), wa, ha)
        if wh is None or min(wh) < 12:
            continue
        w, h = wh
        x0, y0 = max(0, 2 * xc - 6), max(0, 2 * yc - 6)
        x1, y1 = min(wa, 2 * xc + w + 6), min(ha, 2 * yc + h + 6)
        if x1 - x0 < w or y1 - y0 < h:
            continue
        t = cv2.resize(B, wh, interpolation=cv2.INTER_AREA)
        ht = _highpass(t)
        if cv2.meanStdDev(ht)[1][0, 0] < MIN_TEXTURE:
            continue
        # the high-pass of the whole picture, cut: the same values as in the full-size scan
        _, m, _, loc = cv2.minMaxLoc(cv2.matchTemplate(np.ascontiguousarray(HA[y0:y1, x0:x1]), ht,
                                                       cv2.TM_CCOEFF_NORMED))
        if best is None or m > best[0]:
            best = (float(m), (x0 + loc[0], y0 + loc[1]), t)
    if best is None or best[0] < MIN_STRUCTURE:
        return None
    m, (x, y), t = best
    h, w = t.shape
    plain = float(cv2.matchTemplate(A[y:y + h, x:x + w], t, cv2.TM_CCOEFF_NORMED)[0, 0])
    if plain < MIN_PLAIN or not _same_colour(outer, inner, x / wa, y / ha, w / wa, h / ha):
        return None
    return CropMatch(ids[0], ids[1], x / wa, y / ha, w / wa, h / ha, m, plain)


def _whole(A: np.ndarray, HA: np.ndarray, B: np.ndarray, outer: CropFeatures, inner: CropFeatures
           ) -> tuple[float, float] | None:
    """The whole of ``inner`` against the whole of ``outer`` (stretched to its shape when
    the shapes differ by less than 40 %), robustly: a watermark or a logo covering up to a
    fifth of the picture is left out of the comparison (pixels far from the fitted
    brightness map), so it does not hide an otherwise identical picture."""
    import cv2

    ha, wa = A.shape
    hb, wb = B.shape
    if abs((wa / ha) / (wb / hb) - 1) > 0.4:
        return None
    T = cv2.resize(B, (wa, ha), interpolation=cv2.INTER_AREA)
    inl = np.ones(A.shape, dtype=bool)
    for _ in range(2):  # fit brightness (least squares), drop outliers, fit again
        a, t = A[inl], T[inl]
        var = float(a.var())
        if var < 1e-6:
            return None  # flat: nothing to compare
        g = float(((a - a.mean()) * (t - t.mean())).mean()) / var
        r = T - (g * (A - a.mean()) + t.mean())
        spread = 1.4826 * float(np.median(np.abs(r[inl]))) + 1.0
        inl = np.abs(r) <= 3 * spread
    if inl.mean() < WHOLE_INLIERS:
        return None
    HT = _highpass(T)
    # the high-pass spreads an overlay's edges by its blur: leave out their surroundings too
    inl = cv2.erode(inl.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    if inl.mean() < WHOLE_INLIERS / 2 or float(HA[inl].std()) < MIN_TEXTURE:
        return None
    structure = float(np.corrcoef(HA[inl], HT[inl])[0, 1])
    plain = float(np.corrcoef(A[inl], T[inl])[0, 1])
    if structure < MIN_STRUCTURE or plain < MIN_PLAIN or not _same_colour(outer, inner, 0.0, 0.0, 1.0, 1.0):
        return None
    return structure, plain


def _same_colour(outer: CropFeatures, inner: CropFeatures, x: float, y: float, w: float, h: float) -> bool:
    """The colours agree where both pictures have colour (a grey copy matches any)."""
    import cv2

    ab_in = _chroma(inner.color)
    ch, cw = outer.color.shape[:2]
    x0, y0 = int(x * cw), int(y * ch)
    x1, y1 = max(x0 + 1, int(round((x + w) * cw))), max(y0 + 1, int(round((y + h) * ch)))
    region = cv2.resize(np.ascontiguousarray(outer.color[y0:y1, x0:x1]), (ab_in.shape[1], ab_in.shape[0]),
                        interpolation=cv2.INTER_AREA)
    ab_out = _chroma(region)
    if np.abs(ab_in).mean() < 4 or np.abs(ab_out).mean() < 4:  # one side is (nearly) grey
        return True
    return float(np.abs(ab_in - ab_out).mean()) <= MAX_CHROMA_GAP


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
    # a file whose pixels are unknown is measured by its windows' picture shape (square)
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


def from_arrays(z: dict[str, np.ndarray]) -> list[CropMatch]:
    return [CropMatch(int(o), int(i), *map(float, g)) for (o, i), g in zip(z["pairs"], z["geometry"])]
