"""Confirming a crop candidate by its pixels (:mod:`mhc.crops` finds the candidates).

"Inner is outer cut, uniformly scaled" is tested by OpenCV template matching: inner, scaled to
every size that fits, is placed where it correlates best inside outer (scales scanned on
half-size images, the best refined at full size near its place). The best placement must
agree in structure (the high-pass images: a smooth gradient does not), in brightness (the
plain images) and in colour where both pictures have colour. Failing that, the whole pictures
are compared robustly (a watermark or a logo is left out). Hand-written on OpenCV's
primitives: no library confirms crops; ORB keypoints with a RANSAC homography, measured first,
also confirmed look-alike wallpapers of one theme (docs/benchmarks.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .crops import CropFeatures, CropMatch

# Measured on four labelled corpora (docs/benchmarks.md): true crops and copies score
# >= 0.6 / 0.95 after refinement; look-alike wallpapers of one theme, smooth gradients
# and colour variants fail one of the three.
MIN_STRUCTURE = 0.5  # NCC of the high-pass images
MIN_PLAIN = 0.9  # NCC of the grey images
MAX_CHROMA_GAP = 12.0  # mean |a*|,|b*| difference (CIELAB units) where both have colour
MIN_TEXTURE = 1.0  # std of the high-pass template (grey levels): below it, too flat
MAX_ENLARGE = 2.0
WHOLE_INLIERS = 0.8  # share of pixels that must agree when whole pictures are compared
MIN_FRACTION = 0.25  # a crop keeps at least a quarter of its source's width or height


def _highpass(a: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    import cv2

    return a - cv2.GaussianBlur(a, (0, 0), sigma)


@dataclass(frozen=True)
class _Pair:
    """Both pictures as the checks use them, made once per candidate: grey ``A`` (outer) and
    ``B`` (inner) as float, outer's high-pass, and the half-size versions the scale scan uses."""

    outer: CropFeatures
    inner: CropFeatures
    A: np.ndarray
    B: np.ndarray
    HA: np.ndarray
    A2: np.ndarray
    B2: np.ndarray
    HA2: np.ndarray

    @classmethod
    def of(cls, outer: CropFeatures, inner: CropFeatures) -> "_Pair":
        import cv2

        A, B = outer.grey.astype(np.float32), inner.grey.astype(np.float32)
        half = lambda a: cv2.resize(a, (max(1, a.shape[1] // 2), max(1, a.shape[0] // 2)),  # noqa: E731
                                    interpolation=cv2.INTER_AREA)
        A2 = half(A)
        return cls(outer, inner, A, B, _highpass(A), A2, half(B), _highpass(A2, 1.0))


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
    p = _Pair.of(outer, inner)
    least = max(MIN_FRACTION, inner_detail / (MAX_ENLARGE * max(1, outer_width)), 12 / p.A.shape[1])
    lo, hi = (least, 1.0) if near is None else (max(least, near / 1.3), min(1.0, near * 1.3))
    found = _search(p, lo, hi, ids) if lo <= hi else None
    if found is None and near is not None:  # the nearest window can mislead: every scale, coarser
        found = _search(p, least, 1.0, ids, step=0.04)
    if found is not None:
        return found
    # not a crop: the whole picture, edited (a watermark, a logo) or stretched to another shape
    whole = _whole(p) if inner_detail <= MAX_ENLARGE * outer_width else None
    return None if whole is None else CropMatch(ids[0], ids[1], 0.0, 0.0, 1.0, 1.0, *whole)


def _search(p: _Pair, least: float, most: float, ids: tuple[int, int], step: float = 0.02) -> CropMatch | None:
    """The best placement of ``B``, uniformly scaled, inside ``A``, if it passes the three
    checks. Scales are scanned on half-size images (a sixth of the time: almost every
    candidate is a stranger), then the best one is refined at full size near its place."""
    import cv2

    A, B, HA = p.A, p.B, p.HA
    ha, wa = A.shape
    hb, wb = B.shape
    h2a, w2a = p.A2.shape

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
        ht = _highpass(cv2.resize(p.B2, wh, interpolation=cv2.INTER_AREA), 1.0)
        if cv2.meanStdDev(ht)[1][0, 0] < MIN_TEXTURE / 4:  # smoother at half size; checked at full size below
            continue
        _, m, _, loc = cv2.minMaxLoc(cv2.matchTemplate(p.HA2, ht, cv2.TM_CCOEFF_NORMED))
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
    if plain < MIN_PLAIN or not _same_colour(p.outer, p.inner, x / wa, y / ha, w / wa, h / ha):
        return None
    return CropMatch(ids[0], ids[1], x / wa, y / ha, w / wa, h / ha, m, plain)


def _whole(p: _Pair) -> tuple[float, float] | None:
    """The whole of ``inner`` against the whole of ``outer`` (stretched to its shape when
    the shapes differ by less than 40 %), robustly: a watermark or a logo covering up to a
    fifth of the picture is left out of the comparison (pixels far from the fitted
    brightness map), so it does not hide an otherwise identical picture."""
    import cv2

    A, B, HA = p.A, p.B, p.HA
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
    if structure < MIN_STRUCTURE or plain < MIN_PLAIN or not _same_colour(p.outer, p.inner, 0.0, 0.0, 1.0, 1.0):
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
