"""Video frames for hashing: sampled by seeking, not by decoding the whole stream.

``sample_frames`` takes N frames evenly spaced over the duration, skipping the very start
and end (fades, titles). By default each is the keyframe at or before its target time
(PyAV seek + first decoded frame: ~1 s for 20 frames of a 60 s 1080p H.264 file, against
19-37 s for OpenCV's sequential or exact-seek decoding); ``exact=True`` decodes on to the
target time. Near-black or flat frames are skipped for the next usable one. Black
letterbox/pillarbox bars are found over all sampled frames and cropped, so a letterboxed
copy hashes like the original. OpenCV is the fallback reader for files PyAV cannot open.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .decode import DecodeError, access_error
from .signatures import image_signature, with_article
from .discover import extension

log = logging.getLogger(__name__)

VIDEO_VERSION = "2"  # part of every video cache key (2: frames turned upright by the stream's rotation)
FLAT_STD = 6.0  # a frame whose grey levels vary less than this is a fade or a title card
BAR_LEVEL = 24  # rows/columns darker than this (mean and max) count as letterbox bars


@dataclass(frozen=True)
class VideoSettings:
    frames: int = 20
    exact: bool = False  # decode to the exact target times instead of nearest keyframes
    min_side: int = 256  # frames are scaled so their short side is about this

    def cache_tag(self) -> str:
        return f"v{VIDEO_VERSION}:n{self.frames}:{'exact' if self.exact else 'key'}:s{self.min_side}"


@dataclass
class VideoFrames:
    frames: list[Image.Image]  # grey (L) or RGB, bars cropped
    duration: float  # seconds
    width: int
    height: int
    content_aspect: float  # width / height of the picture without bars
    format: str | None = None  # the container, e.g. "mp4"

    def meta(self) -> dict:
        return {"duration": round(self.duration, 3), "width": self.width, "height": self.height,
                "aspect": round(self.content_aspect, 4), "frames": len(self.frames)}


def sample_frames(path: str, settings: VideoSettings, color: bool = False) -> VideoFrames:
    """Sample, clean and crop frames of a video. Raises DecodeError with a reason."""
    try:
        raw, duration, w, h, fmt = _sample_pyav(path, settings, color)
    except _CannotOpen as first:
        # only files PyAV cannot open at all go to OpenCV; damage PyAV found is reported
        try:
            raw, duration, w, h = _sample_opencv(path, settings, color)
            fmt = extension(path).lstrip(".") or None
        except DecodeError:
            raise DecodeError(str(first), cacheable=first.cacheable) from None
    if not raw:
        raise DecodeError("no decodable video frames")
    box = _content_box(raw)
    frames = [f.crop(box) if box != (0, 0) + f.size else f for f in raw]
    bw, bh = box[2] - box[0], box[3] - box[1]
    return VideoFrames(frames, duration, w, h, bw / bh if bh else 1.0, fmt)


def _targets(duration: float, n: int) -> list[float]:
    # evenly spaced, skipping the very start and end: k/(n+1) of the duration, k = 1..n
    return [duration * (k + 1) / (n + 1) for k in range(n)]


def _usable(im: Image.Image) -> bool:
    a = np.asarray(im.convert("L"), dtype=np.float32)
    return float(a.std()) >= FLAT_STD


def _small(im: Image.Image, min_side: int, color: bool) -> Image.Image:
    im = im.convert("RGB" if color else "L")
    short = min(im.size)
    if short > min_side:
        k = min_side / short
        im = im.resize((max(1, round(im.width * k)), max(1, round(im.height * k))), Image.BILINEAR)
    return im


class _CannotOpen(DecodeError):
    pass


def _sample_pyav(path: str, settings: VideoSettings, color: bool):
    try:
        import av
        import av.logging
        from av.video.reformatter import VideoReformatter
    except ImportError:  # pragma: no cover - av is a dependency
        raise DecodeError("PyAV is not installed") from None
    av.logging.set_level(None)  # FFmpeg's own messages would flood the terminal; errors are reported per file
    try:
        container = av.open(path)
    except Exception as e:  # av raises its own error types per FFmpeg error
        reason = _reason(path, e)
        if reason.startswith(("empty file", "not a video")):
            raise DecodeError(reason) from None
        raise _CannotOpen(reason) from None
    # Our own scaler, made in this process: PyAV 18.1.1 keeps one per thread, which a forked
    # worker inherits with swscale's slice threads of the parent, which it does not have; its
    # first frame of another size then waits forever to join them. threads=1: no slice threads
    # (a frame this small gains nothing from them).
    scaler = VideoReformatter()
    with container:
        if not container.streams.video:
            raise DecodeError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb = float(stream.time_base) if stream.time_base else 1e-6
        duration = 0.0
        if stream.duration:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / 1e6
        w, h = stream.codec_context.width, stream.codec_context.height
        if duration <= 0 or not w or not h:
            raise DecodeError(_image_inside(path) or "video has no duration or size (damaged or not a video)")
        t0 = float((stream.start_time or 0) * tb)
        targets = _targets(duration, settings.frames)
        interval = duration / (settings.frames + 1)
        # A keyframe up to max_gap before its target is taken as is (seeking is cheap, decoding
        # is not); when keyframes are sparser than that (long GOPs, short clips), decoding goes
        # on to target - max_gap, reusing the running decoder instead of seeking back.
        max_gap = 0.0 if settings.exact else max(0.5, interval / 2)
        size = _scaled(w, h, settings.min_side)
        fmt = "rgb24" if color else "gray"
        frames: list[Image.Image] = []
        gen = None
        pos = -1.0
        last_key = None  # time of the last keyframe decoded
        gop = 0.0  # lower bound of the keyframe spacing seen so far
        reached_end = 0.0
        misses = 0
        broken = False  # a seek or decode failed: damage, or the file's disk going away
        turns = 0  # the display rotation of the frames decoded
        for target in targets:
            want = target - max_gap - 1e-3
            # Seek only when a keyframe probably lies between here and the next sample:
            # otherwise seeking lands on a keyframe already decoded and repeats the work.
            if gen is not None and last_key is not None:
                gop = max(gop, pos - last_key)
            if gen is None or want < pos or want - pos > max(gop, 1.0):
                try:
                    container.seek(int((t0 + target) / tb), stream=stream, backward=True, any_frame=False)
                except Exception:
                    misses += 1
                    broken = True
                    continue
                gen = container.decode(stream)
                last_key = None
            got = None
            try:
                for frame in gen:
                    t = (float(frame.pts * tb) - t0) if frame.pts is not None else target
                    pos = t
                    reached_end = max(reached_end, t)
                    if frame.key_frame:
                        if last_key is not None and t > last_key:
                            gop = max(gop, t - last_key)
                        last_key = t
                    if t < want:
                        continue
                    turns = _turns(frame)
                    small = scaler.reformat(frame, width=size[0], height=size[1], format=fmt, threads=1)
                    rgb = scaler.reformat(small, format="rgb24", threads=1)  # (what to_image does)
                    im = _upright(Image.fromarray(rgb.to_ndarray()), turns)
                    if _usable(im):
                        got = im
                        break
                    if t > target + max(2.0, interval):
                        break  # a long fade: give up on this sample
            except Exception as e:  # a damaged stretch: keep the frames we have
                log.debug("%s: decoding near %.2fs failed: %s", path, target, e)
                gen = None
                broken = True
            if got is None:
                misses += 1
                gen = None if got is None and pos < target else gen
            else:
                frames.append(got)
        if broken:
            _check_readable(path)
        if targets and reached_end < targets[-1] - max(2.0, interval) and misses > len(targets) // 4:
            raise DecodeError(f"truncated or damaged video: frames end at {reached_end:.1f} s of {duration:.1f} s")
        container_format = (container.format.name or "").split(",")[0] or None
        if turns in (90, 270):  # the size as shown, as for an image's EXIF orientation
            w, h = h, w
        return frames, duration, w, h, container_format


# Phones store a portrait video as landscape frames plus a display matrix that turns them; every
# player, and any re-encode, shows them turned. Counter-clockwise degrees, as PIL's rotations.
_TURN = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}


def _turns(frame) -> int:
    """The display rotation of a frame: PyAV's ``VideoFrame.rotation`` (PyAV >= 14; 0 before,
    where frames are hashed as stored), in counter-clockwise degrees, 0 to 359."""
    return int(round(getattr(frame, "rotation", 0) or 0)) % 360


def _upright(im: Image.Image, turns: int) -> Image.Image:
    turn = _TURN.get(turns)
    return im.transpose(turn) if turn is not None else im


def _scaled(w: int, h: int, min_side: int) -> tuple[int, int]:
    short = min(w, h)
    if short <= min_side:
        return w, h
    k = min_side / short
    return max(2, round(w * k)), max(2, round(h * k))


def _sample_opencv(path: str, settings: VideoSettings, color: bool):
    import cv2

    # OpenCV's FFmpeg backend prints FFmpeg's complaints ("moov atom not found") straight to
    # the terminal, outside mhc's one line per file; it reads this once, at its first use
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise DecodeError("not a readable video")
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        fps = cap.get(cv2.CAP_PROP_FPS) or 0
        if n <= 0 or fps <= 0:
            raise DecodeError("video has no frames")
        duration = n / fps
        frames = []
        for target in _targets(duration, settings.frames):
            cap.set(cv2.CAP_PROP_POS_MSEC, target * 1000)
            ok, bgr = cap.read()
            if not ok:
                continue
            im = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            if _usable(im):
                frames.append(_small(im, settings.min_side, color))
        w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        return frames, duration, w, h
    finally:
        cap.release()


def _content_box(frames: list[Image.Image]) -> tuple[int, int, int, int]:
    """The box outside the black bars common to all frames (the whole frame if none)."""
    w, h = frames[0].size
    if any(f.size != (w, h) for f in frames):
        return (0, 0, w, h)
    stack = np.stack([np.asarray(f.convert("L"), dtype=np.uint8) for f in frames])
    bright = stack.max(axis=0)  # a pixel is content if any frame shows something there
    rows = np.flatnonzero(bright.max(axis=1) > BAR_LEVEL)
    cols = np.flatnonzero(bright.max(axis=0) > BAR_LEVEL)
    if len(rows) == 0 or len(cols) == 0:
        return (0, 0, w, h)
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    # ignore slivers (< 2 %): encoders leave dark edge lines that are not bars
    if top < 0.02 * h:
        top = 0
    if h - bottom < 0.02 * h:
        bottom = h
    if left < 0.02 * w:
        left = 0
    if w - right < 0.02 * w:
        right = w
    return (left, top, right, bottom)


def _check_readable(path: str) -> None:
    """FFmpeg reports a read that failed mid-packet as invalid data, so a file whose disk went
    away during the decoding (unplugged, a FUSE driver killed) would be taken as damaged, or
    hashed from the frames read before, and cached so: if the file cannot be read now, that is
    the reason, and nothing about the file is kept."""
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:
        raise access_error(e) from None


def _reason(path: str, e: Exception) -> str:
    """Why FFmpeg could not open ``path`` (``e``); a file that cannot be read at all raises
    :func:`~mhc.decode.access_error` instead (not about its content: not cached)."""
    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
        with open(path, "rb") as f:
            head = f.read(16)
        if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
            return "not a video: the file holds text"
    except OSError as oe:
        raise access_error(oe) from None
    # FFmpeg's errors carry the path in str(e); the reason alone is its strerror
    msg = getattr(e, "strerror", None) or str(e).split(":")[-1].strip() or type(e).__name__
    return _image_inside(path) or f"not a readable video: damaged, cut short or not a video ({msg})"


def _image_inside(path: str) -> str | None:
    """The reason for a picture saved under a video's extension (FFmpeg may open a JPEG or
    PNG as a one-frame stream without a duration, or not at all): say so, since the user
    can fix it, where "damaged" would send them looking for a broken file."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    fmt = image_signature(head, strict=True)  # strict: AVI is RIFF too, and "BM" is too short to trust
    if fmt is None:
        return None
    ext = os.path.splitext(path)[1]
    return (f"{with_article(fmt)} image with a video's extension ({ext}): mhc tells images from videos by extension; "
            f"a copy with an image extension would be hashed")
