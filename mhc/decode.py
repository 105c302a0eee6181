"""Turning an image file into the pixels the hashes need.

Hashing a photo costs mostly JPEG entropy decoding and resampling, so the decoder reads
only what the configured algorithms need: JPEGs and JPEG 2000s are decoded smaller than
full size where the format allows (``reduced``), other formats are box-reduced after decoding.
The result is EXIF-transposed and flattened to 8-bit ``L`` or ``RGB`` on a fixed
background, so a rotated-by-tag photo and a transparent PNG hash like what a viewer shows.
"""
from __future__ import annotations

import datetime
import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from .discover import extension
from .identity import NotRegularFile
from .memory import available_memory
from .reduced import load_jpeg2000, reduced_request
from .signatures import image_signature, video_signature, with_article

UNREADABLE = "cannot read file"  # + (the system's reason): a disk's fault, not the content's
GONE = "file disappeared while scanning"  # (a Dask worker that cannot see the input says this too)
# Bump when decoding changes in a way that changes hashes: it is part of every cache key.
DECODER_VERSION = "3"  # 3: each algorithm decoded at its own size (decode_variants), grey from colour
BACKGROUND = (255, 255, 255)  # transparent pixels are flattened onto white


class DecodeError(Exception):
    """The file is not usable; the message is the reason shown to the user.

    ``cacheable``: the reason is about the file's content (corrupt, truncated, not an
    image), so it holds until the file changes. Failures about access (permission, I/O),
    limits (--max-pixels, memory) or missing libraries are retried on every run."""

    def __init__(self, reason: str, *, cacheable: bool = True):
        super().__init__(reason)
        self.cacheable = cacheable


@dataclass(frozen=True)
class DecodeSettings:
    """How files are decoded.

    ``min_side``: the decoded image keeps at least this many pixels on its short side
    (0 = full resolution). ``color``: keep RGB (colorhash) instead of converting to L.
    ``max_pixels``: refuse images larger than this (decompression-bomb guard).
    """

    min_side: int = 0
    color: bool = False
    max_pixels: int = 178_956_970  # Pillow's own default limit

    @property
    def exact(self) -> bool:
        return self.min_side == 0

    def cache_tag(self) -> str:
        """Decoder part of cache keys (failures are cached per decoder, not per algorithm)."""
        return f"d{DECODER_VERSION}:{'exact' if self.exact else 'fast'}"


def _register_heif() -> bool:
    """HEIC/HEIF through pillow-heif (AVIF is native in Pillow >= 11.2)."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


HEIF_EXTENSIONS = (".heic", ".heif", ".hif")
RAW_EXTENSIONS = (".cr2", ".nef", ".arw", ".dng", ".raf", ".orf", ".rw2")
_HEIF = _register_heif()


@dataclass(frozen=True)
class Decoded:
    """A decoded image and what was learnt about the file on the way."""

    image: Image.Image
    width: int  # pixels as a viewer shows them (EXIF rotation applied)
    height: int
    format: str | None
    taken: str | None  # EXIF DateTimeOriginal (or DateTime) as ISO 8601


def open_image(path: str, settings: DecodeSettings) -> Image.Image:
    """Decode ``path`` into an 8-bit ``L`` or ``RGB`` image ready for hashing.

    Raises :class:`DecodeError` with a short reason for anything unusable.
    """
    return decode(path, settings).image


def decode(path: str, settings: DecodeSettings) -> Decoded:
    """:func:`open_image`, plus the file's pixel size, format and date taken."""
    return decode_variants(path, [settings])[0]


def decode_variants(path: str, variants: Sequence[DecodeSettings]) -> list[Decoded]:
    """:func:`decode` with each of ``variants``, reading the file once and sharing the work:
    one decode per distinct JPEG draft (scale and mode), one reduction per distinct size.
    Each image is pixel-identical to what ``decode(path, v)`` alone gives, so an algorithm's
    hash never depends on which other algorithms were computed with it (a shared decode at
    the largest algorithm's size moved up to 6 of 52 ahash_8 hashes by a bit). The first
    variant's ``max_pixels`` applies."""
    ext = extension(path)
    if ext in RAW_EXTENSIONS:
        return _open_raw(path, variants)
    if ext in HEIF_EXTENSIONS and not _HEIF:
        raise DecodeError("HEIC/HEIF images need pillow-heif: pip install 'mhc[heif]'", cacheable=False)
    return _open_pillow(path, variants)


def _open_raw(path: str, variants: Sequence[DecodeSettings]) -> list[Decoded]:
    """Camera RAW through rawpy: the embedded JPEG preview where there is one (fast), else
    the demosaiced image at half size."""
    try:
        import rawpy
    except ImportError:
        raise DecodeError("RAW files need rawpy: pip install 'mhc[raw]'", cacheable=False) from None
    import io

    try:
        with rawpy.imread(path) as raw:
            try:
                thumb = raw.extract_thumb()
            except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
                thumb = None
            if thumb is not None and thumb.format == rawpy.ThumbFormat.JPEG:
                im = Image.open(io.BytesIO(thumb.data))
            elif thumb is not None and thumb.format == rawpy.ThumbFormat.BITMAP:
                im = Image.fromarray(thumb.data)
            else:
                im = Image.fromarray(raw.postprocess(half_size=True, use_camera_wb=True))
    except DecodeError:
        raise
    except OSError as e:
        raise access_error(e) from None
    except Exception as e:  # rawpy raises LibRaw* errors per failure
        raise DecodeError(f"not a readable RAW file ({type(e).__name__})") from None
    im.load()
    w, h = _shown_size(im)
    flat = _flatten(im)
    return [Decoded(_finish(flat, v), w, h, "RAW", _taken(im)) for v in variants]


def _open_pillow(path: str, variants: Sequence[DecodeSettings]) -> list[Decoded]:
    limit = variants[0].max_pixels
    reopened: list[Image.Image] = []
    try:
        with _pillow_limit():
            im = Image.open(path)
            with im:
                w, h = im.size
                if w <= 0 or h <= 0:
                    raise DecodeError("image has no pixels")
                if limit and w * h > limit:
                    raise too_large(w, h, limit)
                if getattr(im, "n_frames", 1) > 1:
                    im.seek(0)  # animated GIF / multi-page TIFF: the first frame
                shown, fmt, taken = _shown_size(im), im.format, _taken(im)
                loaded: dict[object, Image.Image] = {}  # draft request -> decoded pixels
                flat: dict[tuple, Image.Image] = {}  # (mode, size) as decoded -> flattened
                out = []
                for v in variants:
                    request = reduced_request(fmt, (w, h), v)
                    if request not in loaded:
                        src = im
                        if loaded:  # a JPEG is drafted once: another scale needs another open
                            src = Image.open(path)
                            reopened.append(src)
                        if isinstance(request, int):
                            src = load_jpeg2000(src, request, path, reopened)
                        elif request is not None:
                            src.draft(*request)
                        same = next((x for x in loaded.values() if (x.mode, x.size) == (src.mode, src.size)), None)
                        if same is None:
                            _check_memory(src)
                            src.load()
                        loaded[request] = src if same is None else same
                    src = loaded[request]
                    key = (src.mode, src.size)
                    if key not in flat:
                        flat[key] = _flatten(src)
                    out.append(Decoded(_finish(flat[key], v), shown[0], shown[1], fmt, taken))
    except DecodeError:
        raise
    except Image.DecompressionBombError as e:
        raise DecodeError(f"decompression bomb guard: {e}", cacheable=False) from None
    except Image.UnidentifiedImageError:
        raise DecodeError(_unidentified_reason(path)) from None
    except MemoryError:
        raise DecodeError("out of memory while decoding; free memory, use -j 1, or lower --max-pixels",
                          cacheable=False) from None
    except OSError as e:
        if e.errno is not None:  # a real system error: about access, not content
            raise access_error(e) from None
        raise _content_error(e) from None
    except (SyntaxError, ValueError, EOFError, TypeError, IndexError, KeyError, struct.error) as e:
        raise _content_error(e) from None
    finally:
        for x in reopened:
            x.close()
    return out


def too_large(w: int, h: int, limit: int) -> DecodeError:
    """The --max-pixels refusal (not cached: it depends on the option, not the file)."""
    return DecodeError(f"image too large: {w}x{h} = {w * h:,} pixels, above the --max-pixels limit of {limit:,} "
                       f"(a decompression-bomb guard); raise --max-pixels to hash it", cacheable=False)


def access_error(e: OSError) -> DecodeError:
    """The failure for a system error reading a file: about access, not content, so never
    cached (the next run tries the file again)."""
    return DecodeError(access_reason(e), cacheable=False)


def access_reason(e: OSError) -> str:
    """What a system error opening or reading a file says about it: it is gone, not ours to
    read, or could not be read (its disk's words: an I/O error, a FUSE driver gone)."""
    if isinstance(e, FileNotFoundError):
        return GONE
    if isinstance(e, NotRegularFile):  # replaced by a FIFO or a device since it was found
        return e.strerror
    if isinstance(e, PermissionError):
        return "permission denied"
    if isinstance(e, IsADirectoryError):
        return "is a directory"
    return f"{UNREADABLE} ({e.strerror or e})"


def _content_error(e: BaseException) -> DecodeError:
    msg = str(e) or type(e).__name__
    if "truncated" in msg.lower() or isinstance(e, EOFError):
        return DecodeError(f"truncated or damaged image data ({msg})")
    return DecodeError(f"corrupt image ({msg})")


def _shown_size(im: Image.Image) -> tuple[int, int]:
    w, h = im.size
    try:
        if im.getexif().get(0x0112) in (5, 6, 7, 8):  # rotated by 90 degrees when shown
            return h, w
    except Exception:  # broken EXIF: the stored size
        pass
    return w, h


def _taken(im: Image.Image) -> str | None:
    """EXIF DateTimeOriginal (else DateTime) as ISO 8601, or None."""
    try:
        exif = im.getexif()
        value = exif.get_ifd(0x8769).get(0x9003) or exif.get(0x0132)
    except Exception:
        return None
    if not isinstance(value, str) or len(value) < 19:
        return None
    # "0000:00:00 00:00:00" (a camera without a clock), month 13, hour 99: not a date, so the
    # report falls back to the mtime and the probable original is not chosen by garbage;
    # some writers put "-" or "/" between the date's parts
    stamp = value[:10].replace("-", ":").replace("/", ":") + " " + value[11:19]
    try:
        return datetime.datetime.strptime(stamp, "%Y:%m:%d %H:%M:%S").isoformat()
    except ValueError:
        return None


# Peak memory of a decode, in bytes per pixel beyond the decoded buffer: EXIF transposition
# may copy it, and flattening alpha makes RGBA, a background and RGB copies before grey.
_PEAK_EXTRA = {"alpha": 12, "plain": 4}


def _check_memory(im: Image.Image) -> None:
    """Refuse an image whose decode would not fit in the memory this process may use,
    instead of letting the kernel kill the worker halfway through."""
    w, h = im.size
    bands = len(im.getbands())
    depth = 4 if im.mode in ("I", "F", "RGBa") else 2 if im.mode.startswith("I;16") else 1
    alpha = "A" in im.mode or "transparency" in im.info
    need = w * h * (2 * bands * depth + _PEAK_EXTRA["alpha" if alpha else "plain"])
    free = available_memory()
    if free is not None and need > free:
        raise DecodeError(f"needs about {need / 2**30:.1f} GB of memory to decode ({w}x{h} pixels), more than the "
                          f"{free / 2**30:.1f} GB available; free memory, use -j 1, or skip it with --max-pixels",
                          cacheable=False)


@contextmanager
def _pillow_limit() -> Iterator[None]:
    """Pillow's own bomb guard is replaced by mhc's check (right after the header is read,
    before any pixel is decoded), so the limit follows --max-pixels and the message says
    how to change it."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _unidentified_reason(path: str) -> str:
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise access_error(e) from None
    if not head:
        return "empty file (0 bytes)"
    fmt = image_signature(head)
    if fmt is not None:
        return f"corrupt {fmt} data: the header is an image's but the rest cannot be decoded"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "not an image: the file holds text"
    video = video_signature(head)
    if video is not None:  # (the mirror of video.py's picture under a video's extension)
        return (f"{with_article(video)} video with an image's extension ({extension(path)}): mhc tells images "
                f"from videos by extension; a copy with a video extension would be hashed")
    return "not a recognised image format (content does not match the extension)"


def _flatten(im: Image.Image) -> Image.Image:
    """EXIF-transposed, 8-bit ``L`` or ``RGB``, transparency flattened onto the background."""
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # broken EXIF must not lose the picture
        pass
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        im = _to_8bit(im)
    elif mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        im = Image.alpha_composite(bg, rgba).convert("RGB")
    elif mode == "L" and "transparency" in im.info:
        return _flatten(im.convert("LA"))
    if im.mode not in ("L", "RGB"):
        im = im.convert("RGB")
    return im


def _finish(im: Image.Image, settings: DecodeSettings) -> Image.Image:
    """Grey unless ``settings.color``, then box-reduced towards ``settings.min_side``."""
    if not settings.color and im.mode != "L":
        im = im.convert("L")
    if not settings.exact:
        short = min(im.size)
        factor = short // settings.min_side if settings.min_side else 1
        if factor >= 2:
            # box reduction: cheap, and imagehash's Lanczos then works on few pixels
            im = im.reduce(factor)
    return im


def _to_8bit(im: Image.Image) -> Image.Image:
    """16-bit and float greyscale -> 8-bit L. Pillow's convert('L') clips at 255 instead."""
    a = np.asarray(im)
    if im.mode == "F":
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        scaled = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        return Image.fromarray(np.nan_to_num(scaled).astype(np.uint8), "L")
    a = a.astype(np.int64)
    if im.mode == "I" and a.max(initial=0) <= 255 and a.min(initial=0) >= 0:
        return Image.fromarray(a.astype(np.uint8), "L")
    return Image.fromarray(np.clip(a >> 8, 0, 255).astype(np.uint8), "L")
