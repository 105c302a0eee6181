"""Which files may link, and at what distance: images with images, videos with videos.

A video's hash for the sweep is the per-bit majority of its frame hashes, so videos sit in
the same threshold folders as images. By default no image-video pair links (one sweep, two
kinds); ``cross_media`` links a video with an image that matches one of its frames (a still
taken from a clip). ``video_match="frames"`` measures two videos by the median distance of
their time-aligned frames instead, which keeps apart different videos made of similar
scenes. Video pairs of very different duration or shape are never linked.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .pairs import Edges, distances, iter_pairs, pack

VIDEO_MATCHES = ("majority", "frames")


@dataclass(frozen=True)
class MatchOptions:
    cross_media: bool = False
    video_match: str = "majority"
    duration_tolerance: float = 0.05  # fraction of the longer video; 0 turns the gate off
    duration_slack: float = 1.5  # seconds always allowed (a trimmed second, a remux's padding)
    aspect_tolerance: float = 0.1  # relative difference of the picture's shape without bars


@dataclass
class Media:
    """Per file (in the sweep's order): its code, and for videos its frames and metadata."""

    codes: np.ndarray  # (n, words) uint64, the hash used by the sweep
    is_video: np.ndarray  # (n,) bool
    frames: dict[int, np.ndarray]  # file index -> (frames, words) uint64 (videos)
    meta: dict[int, dict]  # file index -> duration, aspect, ... (videos)


def majority(frame_hashes: bytes, nbytes: int) -> bytes:
    """Per-bit majority of a video's concatenated frame hashes (ties -> 0)."""
    a = np.frombuffer(frame_hashes, dtype=np.uint8).reshape(-1, nbytes)
    bits = np.unpackbits(a, axis=1)
    return np.packbits(bits.sum(axis=0) * 2 > len(a)).tobytes()


def build_media(hashes: list[bytes], kinds: list[str], metas: list[dict | None], nbytes: int) -> Media:
    is_video = np.array([k == "video" for k in kinds], dtype=bool)
    codes, frames, meta = [], {}, {}
    for i, (h, k) in enumerate(zip(hashes, kinds)):
        if k == "video":
            codes.append(majority(h, nbytes))
            frames[i] = pack([h[s:s + nbytes] for s in range(0, len(h), nbytes)])
            meta[i] = metas[i] or {}
        else:
            codes.append(h)
    return Media(pack(codes), is_video, frames, meta)


def edge_blocks(media: Media, max_distance: int, opts: MatchOptions = MatchOptions(), progress=None,
                variants: np.ndarray | None = None) -> Iterator[Edges]:
    """Every pair that may link within ``max_distance``, block by block (i < j).

    ``variants`` (n, 8, words): hashes of each image's 8 rotations/mirrors; images then
    match by the least distance over them (see :mod:`mhc.precision`)."""
    img = np.flatnonzero(~media.is_video)
    vid = np.flatnonzero(media.is_video)
    if len(img) > 1 and variants is not None:
        from .precision import isometric_edges

        yield from isometric_edges(media.codes, variants, max_distance, allowed=img)
    elif len(img) > 1:
        for b in iter_pairs(media.codes[img], max_distance, progress=progress):
            yield Edges(img[b.i], img[b.j], b.d)
    if len(vid) > 1:
        if opts.video_match == "frames":
            e = _frame_sequence_edges(media, vid, max_distance)
        else:
            e = Edges.concat([Edges(vid[b.i], vid[b.j], b.d) for b in iter_pairs(media.codes[vid], max_distance)])
        yield _gate(e, media, opts)
    if opts.cross_media and len(vid) and len(img):
        yield _cross_edges(media, img, vid, max_distance)


def _gate(e: Edges, media: Media, opts: MatchOptions) -> Edges:
    if not len(e):
        return e
    keep = np.ones(len(e), dtype=bool)
    dur = np.array([media.meta.get(i, {}).get("duration", 0.0) for i in range(len(media.is_video))])
    asp = np.array([media.meta.get(i, {}).get("aspect", 0.0) for i in range(len(media.is_video))])
    if opts.duration_tolerance > 0:
        da, db = dur[e.i], dur[e.j]
        allowed = np.maximum(opts.duration_tolerance * np.maximum(da, db), opts.duration_slack)
        keep &= np.abs(da - db) <= allowed
    if opts.aspect_tolerance > 0:
        aa, ab = asp[e.i], asp[e.j]
        ok = (aa > 0) & (ab > 0)
        keep &= ~ok | (np.abs(aa - ab) <= opts.aspect_tolerance * np.maximum(aa, ab))
    return Edges(e.i[keep], e.j[keep], e.d[keep])


def _frame_sequence_edges(media: Media, vid: np.ndarray, max_distance: int) -> Edges:
    """Median Hamming distance of time-aligned frames (frame k with frame k)."""
    n_frames = max(len(media.frames[v]) for v in vid)
    words = media.codes.shape[1]
    F = np.zeros((len(vid), n_frames, words), dtype=np.uint64)
    valid = np.zeros((len(vid), n_frames), dtype=bool)
    for r, v in enumerate(vid):
        f = media.frames[v]
        F[r, : len(f)] = f
        valid[r, : len(f)] = True
    parts = []
    block = max(1, (1 << 22) // max(1, len(vid) * n_frames))
    for s in range(0, len(vid), block):
        a = F[s:s + block]  # (B, N, W)
        d = np.zeros((a.shape[0], len(vid), n_frames), dtype=np.float32)
        for w in range(words):
            d += np.bitwise_count(a[:, None, :, w] ^ F[None, :, :, w])
        both = valid[s:s + block, None, :] & valid[None, :, :]
        d[~both] = np.nan
        with np.errstate(all="ignore"):
            med = np.nanmedian(d, axis=2)
        rows, cols = np.nonzero(np.nan_to_num(med, nan=np.inf) <= max_distance)
        rows = rows + s
        upper = cols > rows
        parts.append(Edges(vid[rows[upper]], vid[cols[upper]], np.floor(med[rows[upper] - s, cols[upper]]).astype(np.int32)))
    return Edges.concat(parts)


def _cross_edges(media: Media, img: np.ndarray, vid: np.ndarray, max_distance: int) -> Edges:
    """Video-image pairs: the least distance between the image and any of the video's frames."""
    parts = []
    icodes = media.codes[img]
    for v in vid:
        f = media.frames[v]
        d = distances(np.concatenate([f, icodes]), slice(0, len(f)), slice(len(f), None)).min(axis=0)
        hit = np.flatnonzero(d <= max_distance)
        if len(hit):
            other = img[hit]
            parts.append(Edges(np.minimum(other, v), np.maximum(other, v), d[hit].astype(np.int32)))
    return Edges.concat(parts)
