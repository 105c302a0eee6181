"""PDQ, Meta's 256-bit perceptual hash, in numpy, step for step as the C++ reference.

The reference is ``pdq/cpp`` of facebook/ThreatExchange (``pdqhashing.cpp``,
``downscaling.cpp``, ``torben.cpp``, ``pdqio.cpp``). Hand-written because the ``pdqhash``
package ships only a source archive that fails to import under numpy 2, and because the
reference's float32 arithmetic can be followed exactly: each step below keeps the
reference's order of operations in float32 (running box sums, sequential dot products),
so on the same pixels the hash is bit-exact (tests/test_pdq.py checks the reference's
regression hashes). Steps: images larger than 512 on a side are resized to 512 x 512 by
nearest neighbour (as ``pdqio.cpp`` does with CImg), luma in float, two passes of a Jarosz
box filter, decimation to 64 x 64, a 16 x 16 corner of the DCT, and each coefficient above
the median is a 1 bit. The quality (0-100) measures gradients; mhc never links a hash of
quality 0 (a flat image; see MIN_QUALITY).

Hex strings are the reference's (``Hash256::format``: 16-bit words, the last first), and
the packed bytes are those hex digits, so hashes can be compared with other PDQ systems.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image

BITS = 256
DOWNSAMPLE_DIMS = 512  # pdqio.cpp: larger images are resized to 512 x 512 first
MIN_HASHABLE_DIM = 5
# Hashes of quality below this are never linked. Meta advises discarding quality <= 49 when
# matching against other collections; inside one collection that gate drops smooth but
# perfectly hashable pictures (wallpapers, skies: half of one labelled corpus, F1 0.97 ->
# 0.51), while quality 0 marks truly flat images, whose near-zero DCT gives near-identical
# hashes so they would all link to each other. Measured F1 without hard edits on four
# corpora (docs/benchmarks.md): gate at 1 is best or equal everywhere.
MIN_QUALITY = 1

_f32 = np.float32


def _dct_matrix() -> np.ndarray:
    # dct_matrix_64: a float scale factor times a double cosine, rounded to float
    scale = float(_f32(math.sqrt(2.0 / 64)))
    i = np.arange(16, dtype=np.float64)[:, None]
    j = np.arange(64, dtype=np.float64)[None, :]
    return (scale * np.cos((math.pi / 2.0 / 64) * (i + 1) * (2 * j + 1))).astype(_f32)


_D = _dct_matrix()


def _cimg_nearest_index(old: int, new: int) -> np.ndarray:
    """Source index of each output pixel in CImg's nearest-neighbour resize (interpolation
    type 1, boundary conditions 0): a step accumulated in double, truncated."""
    fx = ((old - 1) / (new - 1) if new > 1 else 0.0) if new > old else old / new
    steps = np.full(new, fx, dtype=np.float64)
    steps[0] = 0.0
    return np.cumsum(steps).astype(np.int64)  # np.cumsum adds in sequence, as CImg's loop


def luma(image: Image.Image) -> np.ndarray:
    """Float luma of an 8-bit ``L`` or ``RGB`` image as the reference makes it (after its
    resize of images larger than 512 on a side)."""
    a = np.asarray(image)
    h, w = a.shape[:2]
    if h > DOWNSAMPLE_DIMS or w > DOWNSAMPLE_DIMS:
        a = a[_cimg_nearest_index(h, DOWNSAMPLE_DIMS)][:, _cimg_nearest_index(w, DOWNSAMPLE_DIMS)]
    if a.ndim == 2:
        return a.astype(_f32)
    r, g, b = (a[..., k].astype(_f32) for k in range(3))
    return r * _f32(0.299) + g * _f32(0.587) + b * _f32(0.114)


def _box(x: np.ndarray, window: int) -> np.ndarray:
    """box1DFloat along axis 0 for every column at once: a running float32 sum with the
    reference's four phases (growing, full and shrinking windows). Vectorised over the
    other axis; the loop along the axis keeps the reference's rounding."""
    n = x.shape[0]
    half = (window + 2) // 2
    out = np.empty_like(x)
    s = np.zeros(x.shape[1], dtype=_f32)
    count = 0
    ri = li = oi = 0
    for _ in range(half - 1):
        s = s + x[ri]
        count += 1
        ri += 1
    for _ in range(window - half + 1):
        s = s + x[ri]
        count += 1
        out[oi] = s / _f32(count)
        ri += 1
        oi += 1
    for _ in range(n - window):
        s = s + x[ri]
        s = s - x[li]
        out[oi] = s / _f32(count)
        li += 1
        ri += 1
        oi += 1
    for _ in range(half - 1):
        s = s - x[li]
        count -= 1
        out[oi] = s / _f32(count)
        li += 1
        oi += 1
    return out


def _downsample64(y: np.ndarray) -> np.ndarray:
    rows, cols = y.shape
    along_rows = (cols + 2 * 64 - 1) // (2 * 64)
    along_cols = (rows + 2 * 64 - 1) // (2 * 64)
    for _ in range(2):  # PDQ_NUM_JAROSZ_XY_PASSES
        y = _box(y.T, along_rows).T  # boxAlongRowsFloat
        y = _box(y, along_cols)  # boxAlongColsFloat
    ri = (((np.arange(64) + 0.5) * rows) / 64).astype(np.int64)
    ci = (((np.arange(64) + 0.5) * cols) / 64).astype(np.int64)
    return np.ascontiguousarray(y[ri][:, ci])


def _quality(b: np.ndarray) -> int:
    # int d = ((u - v) * 100) / 255 in float, truncated toward zero
    dv = ((b[:-1, :] - b[1:, :]) * _f32(100)) / _f32(255)
    dh = ((b[:, :-1] - b[:, 1:]) * _f32(100)) / _f32(255)
    total = int(np.abs(np.trunc(dv)).sum() + np.abs(np.trunc(dh)).sum())
    return min(100, total // 90)


def _dct16(a: np.ndarray) -> np.ndarray:
    """B = D A D^T with the reference's sequential float32 sums over k."""
    t = np.zeros((16, 64), dtype=_f32)
    for k in range(64):
        t = t + _D[:, k:k + 1] * a[k:k + 1, :]
    b = np.zeros((16, 16), dtype=_f32)
    for k in range(64):
        b = b + t[:, k:k + 1] * _D[None, :, k]
    return b


def _torben(m: np.ndarray) -> np.float32:
    """torben.cpp: the median the reference compares with (float32 throughout)."""
    n = m.size
    lo, hi = m.min(), m.max()
    while True:
        guess = _f32((lo + hi) / _f32(2))
        less_mask, greater_mask = m < guess, m > guess
        less, greater = int(less_mask.sum()), int(greater_mask.sum())
        equal = n - less - greater
        maxlt = m[less_mask].max() if less else lo
        mingt = m[greater_mask].min() if greater else hi
        if less <= (n + 1) // 2 and greater <= (n + 1) // 2:
            break
        if less > greater:
            hi = maxlt
        else:
            lo = mingt
    if less >= (n + 1) // 2:
        return maxlt
    if less + equal >= (n + 1) // 2:
        return guess
    return mingt


def _bits(b: np.ndarray) -> bytes:
    """Bit i*16+j is coefficient (i, j); printed as 16-bit words, row 15 first."""
    on = b > _torben(b.ravel())
    words = (on.astype(np.uint32) << np.arange(16, dtype=np.uint32)[None, :]).sum(axis=1)
    return b"".join(int(w).to_bytes(2, "big") for w in words[::-1])


# The dihedral variants as the reference derives them from the DCT (no second hash of pixels):
# (transpose?, sign of coefficient (i, j) as a function of i and j)
_DIHEDRAL = {
    "rotate90": (True, lambda i, j: np.where(j % 2 == 1, 1, -1)),
    "rotate180": (False, lambda i, j: np.where((i + j) % 2 == 1, -1, 1)),
    "rotate270": (True, lambda i, j: np.where(i % 2 == 1, 1, -1)),
    "flipx": (False, lambda i, j: np.where(i % 2 == 1, 1, -1)),
    "flipy": (False, lambda i, j: np.where(j % 2 == 1, 1, -1)),
    "flip_plus1": (True, lambda i, j: np.ones_like(i)),
    "flip_minus1": (True, lambda i, j: np.where((i + j) % 2 == 1, -1, 1)),
}


def _dct_of(image: Image.Image, copy64: bool) -> tuple[np.ndarray | None, int]:
    y = luma(image)
    if y.shape[0] < MIN_HASHABLE_DIM or y.shape[1] < MIN_HASHABLE_DIM:
        return None, 0
    # the reference's single hash takes a 64 x 64 image as it is; its dihedral one filters it
    b64 = y if copy64 and y.shape == (64, 64) else _downsample64(y)
    return _dct16(b64), _quality(b64)


def pdq_hash(image: Image.Image) -> tuple[bytes, int]:
    """PDQ hash (32 bytes, the reference's hex order) and quality (0-100) of an 8-bit
    ``L`` or ``RGB`` image. Images smaller than 5 pixels on a side: all-zero, quality 0."""
    b, q = _dct_of(image, copy64=True)
    return (bytes(32), 0) if b is None else (_bits(b), q)


def pdq_dihedral(image: Image.Image) -> tuple[list[bytes], int]:
    """The hashes of the 8 rotations and mirrors, from one DCT (as the reference's
    ``pdqDihedralHash256esFromFloatLuma``), in the order: original, rotate90, rotate180,
    rotate270, flipx, flipy, flip_plus1, flip_minus1; and the quality."""
    b, q = _dct_of(image, copy64=False)
    return _dihedral_bits(b), q


def pdq_with_dihedral(image: Image.Image) -> tuple[bytes, list[bytes], int]:
    """:func:`pdq_hash` and :func:`pdq_dihedral` at the cost of one (they differ only for
    an image of exactly 64 x 64, which the plain hash takes unfiltered)."""
    b, q = _dct_of(image, copy64=False)
    variants = _dihedral_bits(b)
    if image.size == (64, 64):
        return pdq_hash(image)[0], variants, q
    return variants[0], variants, q


def _dihedral_bits(b: np.ndarray | None) -> list[bytes]:
    if b is None:
        return [bytes(32)] * 8
    i, j = np.indices((16, 16))
    out = [_bits(b)]
    for transpose, sign in _DIHEDRAL.values():
        v = b * sign(i, j).astype(_f32)
        out.append(_bits(np.ascontiguousarray(v.T) if transpose else v))
    return out
