"""One file -> every configured hash, read once for all algorithms.

:class:`HashPlan` says what to compute and names the cache keys; :func:`hash_file` does
it for one file and never raises for a bad one (failures are values). Many files, in
parallel and through the cache: :mod:`mhc.runner`.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image

from .algorithms import Algorithm
from .cache import FileInfo, content_sample
from .decode import DecodeError, DecodeSettings, access_reason, decode_variants
from .video import VideoSettings, sample_frames


@dataclass
class FileResult:
    """What hashing one file gave: cache key -> value (hashes, isometric variants, the SSIM
    thumbnail, a video's metadata), facts about the file, or why it failed."""

    path: str
    values: dict[str, bytes] = field(default_factory=dict)
    info: FileInfo | None = None
    error: str | None = None
    cacheable: bool = True  # the failure is about the content, so it holds until the file changes


@dataclass(frozen=True)
class HashPlan:
    """What to compute: algorithms plus decoder settings, and the cache keys they give."""

    algorithms: tuple[Algorithm, ...]
    decode: DecodeSettings
    video: VideoSettings = VideoSettings()
    isometric: bool = False  # also hash the 8 rotations/mirrors of each image
    verify: bool = False  # also keep a small grey thumbnail of each image for SSIM
    crops: bool = False  # also window hashes and verification thumbnails (mhc.crops)
    # The report's thumbnails are written here, from the decode hashing does anyway (not
    # cached, not part of any key; a file whose thumbnail exists is not decoded for it).
    thumb_dir: str | None = None

    @classmethod
    def build(cls, algorithms: list[Algorithm], *, exact: bool = False, max_pixels: int | None = None,
              frames: int = 20, video_exact: bool = False, isometric: bool = False,
              verify: bool = False, crops: bool = False) -> "HashPlan":
        """Decoder settings that cover every algorithm: the smallest image that keeps each
        algorithm's :attr:`~mhc.algorithms.Algorithm.min_side` (full resolution when ``exact``)."""
        side = max(a.min_side for a in algorithms)
        kw = {} if max_pixels is None else {"max_pixels": max_pixels}
        color = any(a.needs_color for a in algorithms)
        # With few frames each one weighs much, and the nearest keyframe to a target differs
        # between two encodes of one clip (measured: two encodes of a clip with other GOPs
        # stay 7-21 bits apart in phash_8 up to 12 keyframe samples, 0-2 from 16 on):
        # below MIN_KEYFRAME_FRAMES, exact times (cheap then).
        exact_video = video_exact or frames < MIN_KEYFRAME_FRAMES
        return cls(tuple(algorithms), DecodeSettings(min_side=0 if exact else side, color=color, **kw),
                   VideoSettings(frames=frames, exact=exact_video, min_side=side), isometric, verify, crops=crops)

    def hkey(self, algo: Algorithm, kind: str = "image") -> str:
        """Cache key of one algorithm's hashes. For images it names the algorithm's own pixel
        budget, not the plan's, so adding an algorithm that needs more pixels does not
        invalidate the others' cached hashes (all are within the measured tolerance of
        imagehash). For videos it names the sampling settings."""
        if kind == "video":
            return f"{algo.key}|{self.video.cache_tag()}"
        if self.decode.exact:
            return f"{algo.key}|{self.decode.cache_tag()}"
        return f"{algo.key}|{self.decode.cache_tag()}{algo.min_side}"

    def meta_key(self) -> str:
        """Cache key of a video's duration and geometry (JSON)."""
        return f"meta|{self.video.cache_tag()}"

    def dkey(self, kind: str = "image") -> str:
        """Cache key of a failure: per decoder, not per algorithm."""
        return self.video.cache_tag() if kind == "video" else self.decode.cache_tag()

    def iso_key(self, algo: Algorithm) -> str:
        """Cache key of the hashes of an image's 8 rotations/mirrors (identity first)."""
        return f"{self.hkey(algo)}|iso"

    def quality_key(self, algo: Algorithm) -> str:
        """Cache key of an image's quality score for an algorithm that has one (PDQ), 1 byte."""
        return f"{self.hkey(algo)}|quality"

    def ssim_key(self) -> str:
        """Cache key of an image's small grey thumbnail for SSIM verification."""
        return f"ssim{SSIM_SIDE}|{self.decode.cache_tag()}"

    def crop_key(self) -> str:
        """Cache key of an image's crop features (window hashes, verification thumbnails)."""
        from .crops import VERSION

        return f"crops{VERSION}|{self.decode.cache_tag()}"

    def crop_settings(self) -> DecodeSettings:
        """How an image is decoded for its crop features (colour, short side >= 256 px)."""
        from .crops import DECODE_SIDE

        return dataclasses.replace(self.decode, min_side=0 if self.decode.exact else DECODE_SIDE, color=True)

    def settings_for(self, algo: Algorithm) -> DecodeSettings:
        """How an image is decoded for ``algo``: at the algorithm's own size, never the plan's,
        so its hash is the same whichever algorithms are computed with it."""
        if self.decode.exact:
            return dataclasses.replace(self.decode, color=algo.needs_color)
        return dataclasses.replace(self.decode, min_side=algo.min_side, color=algo.needs_color)

    def ssim_settings(self) -> DecodeSettings:
        """How an image is decoded for its SSIM thumbnail (grey, 4x the thumbnail's side)."""
        return dataclasses.replace(self.decode, min_side=0 if self.decode.exact else 4 * SSIM_SIDE, color=False)

    def fits(self, kind: str) -> dict[str, int | Callable[[bytes], bool]]:
        """What each cached value a file of ``kind`` needs must be: a byte length (a negative
        one: a positive multiple of it, a video's hashes of its frames) or a check; a value
        that is not is not read (see :meth:`mhc.cache.HashCache.lookup`)."""
        if kind == "video":
            out: dict[str, int | Callable[[bytes], bool]] = {self.hkey(a, kind): -a.nbytes for a in self.algorithms}
            out[self.meta_key()] = _video_meta_ok
            return out
        out = {self.hkey(a): a.nbytes for a in self.algorithms}
        out.update({self.quality_key(a): 1 for a in self.algorithms if a.has_quality})
        out.update({self.iso_key(a): 8 * a.nbytes for a in self.algorithms})
        out[self.ssim_key()] = SSIM_SIDE * SSIM_SIDE  # (a grey thumbnail, a byte per pixel)
        return out

    def keys(self, kind: str, algorithms: tuple[Algorithm, ...] | None = None) -> list[str]:
        """Every cache key a file of ``kind`` needs (of ``algorithms``, default all)."""
        algos = self.algorithms if algorithms is None else algorithms
        keys = [self.hkey(a, kind) for a in algos]
        if kind == "video":
            keys.append(self.meta_key())
        else:
            keys += [self.quality_key(a) for a in algos if a.has_quality]
            if self.isometric:
                keys += [self.iso_key(a) for a in algos]
            if self.verify:
                keys.append(self.ssim_key())
            if self.crops:
                keys.append(self.crop_key())
        return keys


def _video_meta_ok(value: bytes) -> bool:
    """A video's facts as :meth:`mhc.video.VideoFrames.meta` stores them (JSON)."""
    try:
        doc = json.loads(value)
    except ValueError:
        return False
    return isinstance(doc, dict) and all(type(doc.get(k)) in (int, float) for k in ("duration", "aspect"))


MIN_KEYFRAME_FRAMES = 16
# The 8 symmetries of the square (identity first): mirrored and rotated copies.
DIHEDRAL = (None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270,
            Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.TRANSPOSE,
            Image.Transpose.TRANSVERSE)
SSIM_SIDE = 64


def transformed(image: Image.Image, k: int) -> Image.Image:
    """The k-th of the 8 dihedral transforms of an image (0 = itself)."""
    return image if DIHEDRAL[k] is None else image.transpose(DIHEDRAL[k])


def hash_file(path: str, plan: HashPlan, kind: str = "image") -> FileResult:
    """Read ``path`` once and compute every algorithm of ``plan`` (one decode per distinct
    size the algorithms need: one for a large JPEG). Never raises for bad files."""
    try:
        size = os.stat(path).st_size
        sample = content_sample(path, size)  # (refuses what is no longer a regular file)
    except OSError as e:
        return FileResult(path, error=access_reason(e), cacheable=False)
    if kind == "video":
        result = _hash_video(path, plan)
    else:
        result = _hash_image(path, plan)
    result.info = dataclasses.replace(result.info or FileInfo(), sample=sample)
    return result


def _hash_image(path: str, plan: HashPlan) -> FileResult:
    wanted = [plan.settings_for(a) for a in plan.algorithms] + ([plan.ssim_settings()] if plan.verify else []) \
        + ([plan.crop_settings()] if plan.crops else [])
    thumb = _thumb_target(path, plan)
    if thumb is not None:
        wanted.append(thumb[1])  # the same JPEG draft as the hashes' for camera-sized photos
    distinct = list(dict.fromkeys(wanted))
    try:
        decoded = decode_variants(path, distinct)
    except DecodeError as e:
        return FileResult(path, error=str(e), cacheable=e.cacheable)
    d = decoded[0]
    images = {s: x.image for s, x in zip(distinct, decoded)}
    result = FileResult(path, info=FileInfo(d.width, d.height, d.format, d.taken))
    try:
        turned: dict[tuple, Image.Image] = {}  # (settings, k) -> transformed image, shared by algorithms
        for algo in plan.algorithms:
            s = plan.settings_for(algo)
            if algo.has_quality:
                _hash_pdq(images[s], algo, plan, result.values)
                continue
            result.values[plan.hkey(algo)] = algo.hash_image(images[s])
            if plan.isometric:
                for k in range(1, 8):
                    if (s, k) not in turned:
                        turned[s, k] = transformed(images[s], k)  # as cheap as a copy
                result.values[plan.iso_key(algo)] = result.values[plan.hkey(algo)] + b"".join(
                    algo.hash_image(turned[s, k]) for k in range(1, 8))
        if plan.verify:
            g = images[plan.ssim_settings()].resize((SSIM_SIDE, SSIM_SIDE), Image.BILINEAR)
            result.values[plan.ssim_key()] = g.tobytes()
        if plan.crops:
            from .crops import features

            result.values[plan.crop_key()] = features(images[plan.crop_settings()])
        if thumb is not None:
            _save_thumb(images[thumb[1]], thumb[0])
    except MemoryError:
        return FileResult(path, error="out of memory while hashing; free memory or use -j 1", cacheable=False)
    except Exception as e:  # a hash library failing on an odd image is a file error, not a crash
        return FileResult(path, error=f"hashing failed ({type(e).__name__}: {e})")
    return result


def _hash_pdq(image: Image.Image, algo: Algorithm, plan: HashPlan, values: dict[str, bytes]) -> None:
    """PDQ with its quality; with isometric matching its 8 dihedral hashes come from one DCT
    (the reference's way: no pixels are turned)."""
    from .pdq import pdq_hash, pdq_with_dihedral

    if plan.isometric:
        values[plan.hkey(algo)], hashes, quality = pdq_with_dihedral(image)
        values[plan.iso_key(algo)] = b"".join(hashes)
    else:
        values[plan.hkey(algo)], quality = pdq_hash(image)
    values[plan.quality_key(algo)] = bytes([quality])


def _thumb_target(path: str, plan: HashPlan) -> tuple[str, DecodeSettings] | None:
    if plan.thumb_dir is None:
        return None
    from .thumbs import THUMB_SIDE, thumb_target  # here: thumbs imports the runner, which imports this

    dest = thumb_target(plan.thumb_dir, path)
    if dest is None:
        return None
    return dest, dataclasses.replace(plan.decode, min_side=THUMB_SIDE, color=True)


def _save_thumb(image: Image.Image, dest: str) -> None:
    from .thumbs import save_thumb

    try:
        save_thumb(image, dest)
    except OSError:
        pass  # e.g. a Dask worker on another machine: the report makes the missing ones


def _hash_all(image, algorithms, exact: bool) -> list[bytes]:
    reduced: dict[int, object] = {1: image}
    out = []
    for algo in algorithms:
        factor = 1
        if not exact:
            # Box-reduce to what this algorithm needs before imagehash's Lanczos resize:
            # resampling, not decoding, dominated hashing of draft-decoded photos.
            factor = max(1, min(image.size) // algo.min_side)
        if factor not in reduced:
            reduced[factor] = image.reduce(factor)
        out.append(algo.hash_image(reduced[factor]))
    return out


def _hash_video(path: str, plan: HashPlan) -> FileResult:
    color = any(a.needs_color for a in plan.algorithms)
    try:
        vf = sample_frames(path, plan.video, color=color)
    except DecodeError as e:
        return FileResult(path, error=str(e), cacheable=e.cacheable)
    if not vf.frames:
        return FileResult(path, error="no usable frames (every sampled frame is black or flat)")
    result = FileResult(path, info=FileInfo(vf.width, vf.height, vf.format, None))
    try:
        per_frame = [_hash_all(f, plan.algorithms, False) for f in vf.frames]
        for k, algo in enumerate(plan.algorithms):
            result.values[plan.hkey(algo, "video")] = b"".join(h[k] for h in per_frame)
    except Exception as e:
        return FileResult(path, error=f"hashing failed ({type(e).__name__}: {e})")
    result.values[plan.meta_key()] = json.dumps(vf.meta()).encode()
    return result
