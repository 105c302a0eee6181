"""What a file is by its first bytes: the image format or video container its signature
announces, so a bad file's reason can say "a JPEG", "an MP4 video with an image's extension"
rather than "cannot identify". Pure functions of bytes (no file access)."""
from __future__ import annotations

_SIGNATURES = [
    (b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF8", "GIF"), (b"BM", "BMP"),
    (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"RIFF", "WEBP"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"), (b"\xff\x4f\xff\x51", "JPEG 2000"), (b"qoif", "QOI"),
]


# Brands of ISO base media files that hold pictures (HEIF, AVIF), not a video
_PICTURE_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis"}


def image_signature(head: bytes, *, strict: bool = False) -> str | None:
    """The image format a file's first bytes (``head``, 16 are enough) announce, else None.
    ``strict``: only signatures no video container shares: not BMP's two bytes, and RIFF only
    with WEBP at bytes 8-12 (AVI is RIFF too)."""
    for magic, fmt in _SIGNATURES:
        if head.startswith(magic):
            if strict and (fmt == "BMP" or (fmt == "WEBP" and head[8:12] != b"WEBP")):
                return None
            return fmt
    if head[4:8] == b"ftyp" and head[8:12] in _PICTURE_BRANDS:
        return "AVIF" if head[8:12] in (b"avif", b"avis") else "HEIF"
    return None


_VIDEO_SIGNATURES = [
    (b"\x1aE\xdf\xa3", "WebM/Matroska"), (b"FLV\x01", "FLV"), (b"OggS", "Ogg"),
    (b"0&\xb2u\x8ef\xcf\x11", "ASF/WMV"), (b"\x00\x00\x01\xba", "MPEG"),
]


def video_signature(head: bytes) -> str | None:
    """The video container a file's first bytes (``head``, 16 are enough) announce, else
    None (HEIF and AVIF pictures share MP4's box format; their brand tells them apart)."""
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return None if brand in _PICTURE_BRANDS else "QuickTime" if brand == b"qt  " else "MP4"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "AVI"
    return next((fmt for magic, fmt in _VIDEO_SIGNATURES if head.startswith(magic)), None)


def with_article(fmt: str) -> str:
    """``an MP4``, ``an AVIF``, ``a JPEG``, ``a WebM/Matroska``: by how the format's name
    (of those above) is said."""
    return f"{'an' if fmt[0] in 'AEIOFM' else 'a'} {fmt}"
