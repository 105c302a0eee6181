"""The registry of hash algorithms: thin wrappers over imagehash.

An :class:`Algorithm` is a name plus a hash size (``phash_16``). It knows how many
bits it produces, how many pixels it needs, and how to hash a decoded PIL image to
packed bytes. Hashes are stored and compared as packed bit strings (``np.packbits``
of imagehash's boolean array, row-major), so the Hamming distance of two files is the
popcount of the XOR of their bytes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import imagehash
import numpy as np
from PIL import Image

from .errors import UsageError


def _whash(image: Image.Image, size: int) -> imagehash.ImageHash:
    return imagehash.whash(image, hash_size=size, mode="haar")


def _colorhash(image: Image.Image, size: int) -> imagehash.ImageHash:
    return imagehash.colorhash(image, binbits=size)


def _pdq(image: Image.Image, size: int):  # packed bytes already (see Algorithm.hash_image)
    from .pdq import pdq_hash

    return pdq_hash(image)[0]


_FUNCS: dict[str, Callable[[Image.Image, int], imagehash.ImageHash]] = {
    "ahash": lambda im, s: imagehash.average_hash(im, hash_size=s),
    "dhash": lambda im, s: imagehash.dhash(im, hash_size=s),
    "dhash_vertical": lambda im, s: imagehash.dhash_vertical(im, hash_size=s),
    "phash": lambda im, s: imagehash.phash(im, hash_size=s),
    "whash": _whash,
    "colorhash": _colorhash,
    "pdq": _pdq,
}
NAMES: tuple[str, ...] = tuple(_FUNCS)
ALIASES = {"avhash": "ahash", "whash_haar": "whash"}
DESCRIPTIONS = {
    "ahash": "average hash: each pixel of a size x size grey thumbnail above or below the mean",
    "dhash": "difference hash: brightness gradient between horizontal neighbours",
    "dhash_vertical": "difference hash over vertical neighbours",
    "phash": "perceptual hash: low frequencies of the DCT of a 4*size thumbnail",
    "whash": "wavelet hash (Haar); size must be a power of 2",
    "colorhash": "colour hash: 14 hue/saturation bins of SIZE bits each (not structural)",
    "pdq": "Meta's PDQ (256 bits, pdq_16 only): DCT of a 64x64 box-filtered luma; flat images "
           "(quality 0) are never linked",
}

DEFAULT_ALGORITHMS = ("phash_8", "ahash_8", "dhash_8", "whash_8", "phash_16")
# peterlevi/image-clustering's ALGORITHMS table, in its order
PRESETS: dict[str, tuple[str, ...]] = {
    "default": DEFAULT_ALGORITHMS,
    "image-clustering": (
        "phash_8", "ahash_8", "dhash_8", "whash_8",
        "phash_12", "ahash_12", "dhash_12",
        "phash_16", "ahash_16", "dhash_16", "whash_16",
        "phash_20", "ahash_20", "dhash_20",
    ),
}

# The fast decoder keeps, for each algorithm, a short side of at least MIN_SIDE pixels and
# MARGIN x the size the algorithm resamples to, so imagehash's Lanczos filter sees nearly
# the same input as from the full-resolution image. Measured on real photos (Debian
# wallpapers), mean bits off from imagehash on the full image: phash_8 0.1, ahash_8 0.0,
# dhash_8 0.1, whash_8 0.7, phash_16 0.5; whash_16 3.5 (use --exact for it) (benchmarks/hashing.py).
MIN_SIDE = 256
MARGIN = 4


@dataclass(frozen=True, order=True)
class Algorithm:
    """One hash algorithm at one size, e.g. ``Algorithm("phash", 16)``."""

    name: str
    size: int

    @property
    def key(self) -> str:
        """The folder and cache name, ``<name>_<size>``."""
        return f"{self.name}_{self.size}"

    @property
    def bits(self) -> int:
        """Number of bits in one hash."""
        if self.name == "colorhash":
            return 14 * self.size
        return self.size * self.size

    @property
    def nbytes(self) -> int:
        """Bytes of one hash as stored (the bits packed, the last byte padded)."""
        return (self.bits + 7) // 8

    @property
    def needs_color(self) -> bool:
        # PDQ makes its own float luma from RGB, as its reference does
        return self.name in ("colorhash", "pdq")

    @property
    def has_quality(self) -> bool:
        """The hash comes with a quality score; below mhc.pdq.MIN_QUALITY it is never linked."""
        return self.name == "pdq"

    @property
    def working_size(self) -> int:
        """Pixels per side the algorithm resamples the image to (before MARGIN)."""
        if self.name == "phash":
            return 4 * self.size  # imagehash's highfreq_factor
        if self.name in ("dhash", "dhash_vertical"):
            return self.size + 1
        if self.name == "colorhash":
            return 64  # histogram of bins: resolution barely matters
        return self.size

    @property
    def min_side(self) -> int:
        """Short side (pixels) the fast decoder keeps for this algorithm."""
        if self.name == "pdq":
            # PDQ's reference works on at most 512 x 512 (larger images are resized to it):
            # a draft decode that keeps 512 px stays within a few bits (docs/benchmarks.md)
            return 512
        if self.name == "whash":
            # whash resizes to a power-of-2 square and runs three wavelet transforms on it:
            # 16x its size keeps whash_8 within 1 bit of full resolution (0.7 measured) at a
            # quarter of the cost of 256 px
            return 16 * self.size
        return max(MIN_SIDE, MARGIN * self.working_size)

    def hash_image(self, image: Image.Image) -> bytes:
        """Hash a decoded image; returns the packed bits (``ceil(bits / 8)`` bytes)."""
        h = _FUNCS[self.name](image, self.size)
        if isinstance(h, bytes):
            return h
        return np.packbits(np.asarray(h.hash, dtype=bool).ravel()).tobytes()

    def to_hex(self, packed: bytes) -> str:
        """The hash as imagehash's ``str(ImageHash)`` would print it."""
        value = int.from_bytes(packed, "big") >> (8 * len(packed) - self.bits)
        return format(value, f"0{(self.bits + 3) // 4}x")


_SPEC = re.compile(r"^(?P<name>[a-z_]+?)_(?P<size>\d+)$")


def parse_algorithm(spec: str) -> Algorithm:
    """Parse ``NAME_SIZE`` (``phash_16``, ``avhash_8``, ``whash_16``) into an Algorithm.

    Raises :class:`UsageError` with a fix-it message for unknown names and bad sizes.
    """
    if not isinstance(spec, str):  # parse_algorithm(8) from Python: not an AttributeError inside
        raise UsageError(f"algorithm {spec!r} is not NAME_SIZE text; write for example 'phash_16'")
    text = spec.strip(", \t\n").lower()  # "phash_8," as a run's list of one is read
    m = _SPEC.match(text)
    known = ", ".join(NAMES + tuple(ALIASES))
    listed = re.split(r"[,\s]+", text)
    if not m and len(listed) > 1:  # a run takes a list; mhc pairs and hydrus push one algorithm at a time
        raise UsageError(f"one algorithm here, not a list ({spec!r}); run the command once per algorithm, "
                         f"e.g. -a {listed[0]}")
    bare = ALIASES.get(text, text)
    if not m and bare == "pdq":  # one size only: the name says it all
        return Algorithm("pdq", 16)
    if not m and bare in _FUNCS:  # a name without its size
        example = "colorhash_3" if bare == "colorhash" else f"{text}_8 (64 bits) or {text}_16 (256 bits)"
        raise UsageError(f"algorithm {spec!r} needs a size: write for example -a {example}")
    if not m:
        raise UsageError(
            f"algorithm {spec!r} is not NAME_SIZE; write for example -a phash_16 "
            f"(names: {known})"
        )
    name = ALIASES.get(m["name"], m["name"])
    size = int(m["size"])
    if name not in _FUNCS:
        raise UsageError(f"unknown algorithm {m['name']!r} in {spec!r}; choose one of: {known}")
    if name == "pdq":
        if size != 16:
            raise UsageError(f"PDQ has one size, 256 bits: write pdq_16 (got {spec!r})")
    elif name == "colorhash":
        if not 1 <= size <= 16:
            raise UsageError(f"colorhash size is bits per bin, 1 to 16 (got {size}); try colorhash_3")
    elif not 2 <= size <= 64:
        raise UsageError(f"hash size must be 2 to 64 (got {size} in {spec!r}); try {name}_8 or {name}_16")
    if name == "whash" and size & (size - 1):
        lo = 1 << (size.bit_length() - 1)
        raise UsageError(
            f"whash size must be a power of 2 (got {size}); try whash_{lo} or whash_{lo * 2}"
        )
    return Algorithm(name, size)


def parse_algorithms(specs: list[str] | tuple[str, ...] | None, preset: str | None = None) -> list[Algorithm]:
    """Parse ``-a`` options and an optional preset into a de-duplicated, ordered list. A
    spec may list several, separated by commas or spaces (``-a phash_8,dhash_8``)."""
    out: list[Algorithm] = []
    if preset is not None:
        if preset not in PRESETS:
            raise UsageError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
        specs = list(PRESETS[preset]) + list(specs or [])
    if not specs:
        specs = list(DEFAULT_ALGORITHMS)
    names = []
    for spec in specs:
        listed = spec.replace(",", " ").split() if isinstance(spec, str) else [spec]
        if not listed:
            parse_algorithm(spec)  # an empty one: its own message
        names += listed
    for name in names:
        algo = parse_algorithm(name)
        if algo not in out:
            out.append(algo)
    return out
