"""Decoding a picture smaller than its full size, where the format can: a JPEG in the DCT
domain at 1/2, 1/4 or 1/8 scale (Pillow's ``draft``), a JPEG 2000 at a lower resolution level
of its wavelet pyramid. Either keeps the short side at least ``DecodeSettings.min_side``."""
from __future__ import annotations

from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:
    from .decode import DecodeSettings

# MPO: Pillow's name for a JPEG that carries more pictures after the first (the large preview
# cameras embed, a phone's HDR gain map, a 3D camera's second eye); the first picture is an
# ordinary JPEG, drafted as one. Left out, those camera photos were decoded at full size.
_JPEG_FORMATS = ("JPEG", "MPO")


def reduced_request(fmt: str | None, size: tuple[int, int], settings: DecodeSettings) -> object:
    """How to decode a picture of ``size`` smaller than full size for ``settings``: a JPEG's
    ``draft`` arguments, a JPEG 2000's number of halvings, or None (full size)."""
    if settings.exact:
        return None
    if fmt in _JPEG_FORMATS:
        return _draft_request(size, settings)
    if fmt == "JPEG2000":
        # (openjpeg decoded a lossless 12 MP picture here in 4.2 s at full size, 0.07 s at 1/8)
        halvings = 0
        while min(size) >> (halvings + 1) >= settings.min_side:
            halvings += 1
        return halvings or None
    return None


def load_jpeg2000(im: Image.Image, halvings: int, path: str, opened: list[Image.Image]) -> Image.Image:
    """A JPEG 2000 decoded at 1/2**halvings of its size. A file coded with fewer resolution
    levels cannot be reduced that far (openjpeg fails, and Pillow does not tell the levels):
    it is decoded at full size instead."""
    im.reduce = halvings  # type: ignore[method-assign]  # (Pillow's JPEG 2000 attribute)
    try:
        im.load()
        return im
    except OSError as e:
        if e.errno is not None:
            raise
    again = Image.open(path)
    opened.append(again)
    return again


def _draft_request(size: tuple[int, int], settings: DecodeSettings) -> tuple[None, tuple[int, int]] | None:
    """Arguments of ``draft`` for a JPEG of ``size`` (None: decode at full size)."""
    w, h = size
    short = min(w, h)
    if short <= settings.min_side:
        return None
    # draft keeps both sides >= the requested size; ask for the long side in proportion
    k = settings.min_side / short
    # Scale only, never a mode: grey is made from the colour decode (_finish), so one decode
    # serves grey hashes, colour hashes and the report's thumbnail alike. Measured on 12 MP
    # JPEGs at 1/8 scale: the colour decode plus a conversion to grey costs what libjpeg's
    # luma-only decode costs (7.6 vs 7.7 ms; entropy decoding dominates at that scale).
    return None, (max(1, int(w * k + 0.999)), max(1, int(h * k + 0.999)))
