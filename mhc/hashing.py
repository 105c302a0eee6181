"""One file -> every configured hash; many files -> hashes, in parallel, through the cache.

Each file is decoded once for all algorithms. Work runs on a
``concurrent.futures.Executor``: a spawn-safe process pool locally, or any executor with
the same interface (a distributed engine's) at scale. Failures are values, never crashes.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, wait, FIRST_COMPLETED
from dataclasses import dataclass, field

from PIL import Image

from .algorithms import Algorithm
from .cache import HashCache
from .decode import DecodeError, DecodeSettings, open_image
from .discover import MediaFile
from .errors import FileError
from .video import VideoSettings, sample_frames

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: called as work advances (the CLI draws bars with it)."""


@dataclass
class FileResult:
    """Hashes of one file (``hkey -> packed bits``; for a video, its frames' hashes one after
    another plus a JSON ``meta`` entry), or the reason it failed."""

    path: str
    hashes: dict[str, bytes] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class HashPlan:
    """What to compute: algorithms plus decoder settings, and the cache keys they give."""

    algorithms: tuple[Algorithm, ...]
    decode: DecodeSettings
    video: VideoSettings = VideoSettings()
    isometric: bool = False  # also hash the 8 rotations/mirrors of each image
    verify: bool = False  # also keep a small grey thumbnail of each image for SSIM

    @classmethod
    def build(cls, algorithms: list[Algorithm], *, exact: bool = False, max_pixels: int | None = None,
              frames: int = 20, video_exact: bool = False, isometric: bool = False,
              verify: bool = False) -> "HashPlan":
        """Decoder settings that cover every algorithm: the smallest image that keeps each
        algorithm's :attr:`~mhc.algorithms.Algorithm.min_side` (full resolution when ``exact``)."""
        side = max(a.min_side for a in algorithms)
        kw = {} if max_pixels is None else {"max_pixels": max_pixels}
        color = any(a.needs_color for a in algorithms)
        return cls(tuple(algorithms), DecodeSettings(min_side=0 if exact else side, color=color, **kw),
                   VideoSettings(frames=frames, exact=video_exact, min_side=side), isometric, verify)

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

    def ssim_key(self) -> str:
        """Cache key of an image's small grey thumbnail for SSIM verification."""
        return f"ssim{SSIM_SIDE}|{self.decode.cache_tag()}"

    def keys(self, kind: str) -> dict[str, str]:
        """Every cache key a file of ``kind`` needs -> the name its value gets in results
        (``algo.key``, ``algo.key + "|iso"``, ``"ssim"`` or ``"meta"``)."""
        keys = {self.hkey(a, kind): a.key for a in self.algorithms}
        if kind == "video":
            keys[self.meta_key()] = "meta"
        else:
            if self.isometric:
                keys.update({self.iso_key(a): f"{a.key}|iso" for a in self.algorithms})
            if self.verify:
                keys[self.ssim_key()] = "ssim"
        return keys


# The 8 symmetries of the square (identity first): mirrored and rotated copies.
DIHEDRAL = (None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270,
            Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.TRANSPOSE,
            Image.Transpose.TRANSVERSE)
SSIM_SIDE = 64


def transformed(image: Image.Image, k: int) -> Image.Image:
    """The k-th of the 8 dihedral transforms of an image (0 = itself)."""
    return image if DIHEDRAL[k] is None else image.transpose(DIHEDRAL[k])


def hash_file(path: str, plan: HashPlan, kind: str = "image") -> FileResult:
    """Decode ``path`` once and compute every algorithm of ``plan``. Never raises for bad files."""
    if kind == "video":
        return _hash_video(path, plan)
    try:
        image = open_image(path, plan.decode)
    except DecodeError as e:
        return FileResult(path, error=str(e))
    result = FileResult(path)
    try:
        for algo, hashed in zip(plan.algorithms, _hash_all(image, plan.algorithms, plan.decode.exact)):
            result.hashes[plan.hkey(algo)] = hashed
        if plan.isometric:
            # all from the one decoded image; a transposed image is as cheap as a copy
            variants = [_hash_all(transformed(image, k), plan.algorithms, plan.decode.exact) for k in range(1, 8)]
            for n, algo in enumerate(plan.algorithms):
                result.hashes[plan.iso_key(algo)] = result.hashes[plan.hkey(algo)] + b"".join(v[n] for v in variants)
        if plan.verify:
            g = image.convert("L").resize((SSIM_SIDE, SSIM_SIDE), Image.BILINEAR)
            result.hashes[plan.ssim_key()] = g.tobytes()
    except Exception as e:  # a hash library failing on an odd image is a file error, not a crash
        return FileResult(path, error=f"hashing failed ({type(e).__name__}: {e})")
    return result


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
        return FileResult(path, error=str(e))
    if not vf.frames:
        return FileResult(path, error="no usable frames (every sampled frame is black or flat)")
    result = FileResult(path)
    try:
        per_frame = [_hash_all(f, plan.algorithms, False) for f in vf.frames]
        for k, algo in enumerate(plan.algorithms):
            result.hashes[plan.hkey(algo, "video")] = b"".join(h[k] for h in per_frame)
    except Exception as e:
        return FileResult(path, error=f"hashing failed ({type(e).__name__}: {e})")
    result.hashes[plan.meta_key()] = json.dumps(vf.meta()).encode()
    return result


def hash_batch(items: list[tuple[str, str]], plan: HashPlan) -> list[FileResult]:
    """Worker task: a small batch of ``(path, kind)`` (amortises inter-process overhead)."""
    return [hash_file(p, plan, kind) for p, kind in items]


def _worker_init() -> None:
    # Ctrl-C is handled once, by the main process, which then stops the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # If the main process is killed (kill -9), take the workers down with it (Linux).
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def local_executor(workers: int) -> ProcessPoolExecutor:
    """A process pool that is safe under the spawn start method."""
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init
    )


@dataclass
class HashStats:
    hashed: int = 0  # files decoded in this run
    cached: int = 0  # files whose every hash came from the cache
    failed: int = 0


@dataclass
class HashResults:
    """Hashes for every file, by algorithm key, plus the files that failed."""

    hashes: dict[str, dict[str, bytes]]  # path -> algo.key -> packed bits (videos: all frames)
    errors: list[FileError]
    stats: HashStats
    meta: dict[str, dict] = field(default_factory=dict)  # video path -> duration, size, aspect


# Below this many files to decode, a process pool costs more (interpreter start-up and
# imports, ~1 s) than it saves.
MIN_FILES_FOR_POOL = 24


def compute_hashes(
    files: list[MediaFile],
    plan: HashPlan,
    cache: HashCache,
    *,
    workers: int = 0,
    executor: Executor | None = None,
    progress: Progress | None = None,
    flush_every: int = 256,
) -> HashResults:
    """Hash ``files`` with ``plan``, using and filling ``cache``.

    Only missing (file, algorithm) pairs are computed; a file is decoded once for all
    its missing algorithms. ``executor``: run batches there (e.g. a Dask client's
    executor); otherwise a local process pool of ``workers`` (0 = all cores).
    Results reach the cache in batches as they arrive, so an interrupted run keeps them.
    """
    by_path = {f.path: f for f in files}
    kinds = sorted({f.kind for f in files})
    keys = {k: plan.keys(k) for k in kinds}
    all_keys = sorted({hk for ks in keys.values() for hk in ks})
    cached, cached_fail = cache.lookup(files, all_keys, [plan.dkey(k) for k in kinds])

    out: dict[str, dict[str, bytes]] = {}
    meta: dict[str, dict] = {}
    errors: list[FileError] = []
    stats = HashStats()
    todo: list[MediaFile] = []

    def keep(path: str, kind: str, values: dict[str, bytes]) -> None:
        out[path] = {}
        for hk, v in values.items():
            name = keys[kind].get(hk)
            if name == "meta":
                meta[path] = json.loads(v)
            elif name is not None:
                out[path][name] = v

    for f in files:
        failed = cached_fail.get(f.path, {}).get(plan.dkey(f.kind))
        if failed is not None:
            errors.append(FileError(f.path, failed))
            stats.cached += 1
            continue
        have = cached.get(f.path, {})
        if all(k in have for k in keys[f.kind]):
            keep(f.path, f.kind, {k: have[k] for k in keys[f.kind]})
            stats.cached += 1
        else:
            todo.append(f)

    total = len(files)
    done = total - len(todo)
    if progress:
        progress("hash", done, total)
    if not todo:
        return HashResults(out, sorted(errors, key=lambda e: e.path), stats, meta)

    # Only the algorithms some file still lacks; a file missing any is decoded once.
    def lacks(a: Algorithm, f: MediaFile) -> bool:
        have = cached.get(f.path, {})
        return plan.hkey(a, f.kind) not in have or (plan.isometric and f.kind == "image" and plan.iso_key(a) not in have)

    missing = [a for a in plan.algorithms if any(lacks(a, f) for f in todo)]
    work_plan = HashPlan(tuple(missing or plan.algorithms), plan.decode, plan.video, plan.isometric, plan.verify)

    pending_h: list[tuple[str, str, bytes]] = []
    pending_f: list[tuple[str, str, str]] = []

    last_flush = time.monotonic()

    def flush() -> None:
        nonlocal last_flush
        if pending_h or pending_f:
            cache.store(by_path, pending_h, pending_f)
            pending_h.clear()
            pending_f.clear()
        last_flush = time.monotonic()

    def take(res: FileResult) -> None:
        nonlocal done
        done += 1
        kind = by_path[res.path].kind
        if res.error is not None:
            errors.append(FileError(res.path, res.error))
            pending_f.append((res.path, plan.dkey(kind), res.error))
            stats.failed += 1
        else:
            merged = {k: v for k, v in cached.get(res.path, {}).items() if k in keys[kind]}
            merged.update(res.hashes)
            for k, v in res.hashes.items():
                pending_h.append((res.path, k, v))
            keep(res.path, kind, merged)
            stats.hashed += 1
        # by count, and at least every second: a killed run loses at most a second of work
        if len(pending_h) + len(pending_f) >= flush_every or time.monotonic() - last_flush > 1.0:
            flush()

    try:
        for res in _run([(f.path, f.kind) for f in todo], work_plan, workers, executor):
            take(res)
            if progress:
                progress("hash", done, total)
    finally:
        flush()  # also on Ctrl-C: what was computed is kept
    return HashResults(out, sorted(errors, key=lambda e: e.path), stats, meta)


def _run(items: list[tuple[str, str]], plan: HashPlan, workers: int, executor: Executor | None) -> Iterator[FileResult]:
    workers = workers or os.cpu_count() or 1
    if executor is None and (workers == 1 or len(items) < MIN_FILES_FOR_POOL):
        for p, kind in items:
            yield hash_file(p, plan, kind)
        return
    n_workers = workers if executor is None else max(workers, 2)
    # ~8 batches per worker balances load; at most 32 files so progress stays lively
    size = max(1, min(32, len(items) // (n_workers * 8)))
    batches = [items[i:i + size] for i in range(0, len(items), size)]
    own = executor is None
    ex = local_executor(workers) if own else executor
    futures: set[Future] = set()
    finished_ok = False
    try:
        # keep a bounded number of batches in flight: memory stays flat for huge inputs
        it = iter(batches)
        for b in it:
            futures.add(ex.submit(hash_batch, b, plan))
            if len(futures) >= n_workers * 4:
                break
        while futures:
            finished, futures = wait(futures, return_when=FIRST_COMPLETED)
            for fut in finished:
                yield from fut.result()
                nxt = next(it, None)
                if nxt is not None:
                    futures.add(ex.submit(hash_batch, nxt, plan))
        finished_ok = True
    finally:
        if own:
            if finished_ok:
                ex.shutdown(wait=True)
            else:
                _terminate(ex)
        else:
            for fut in futures:
                fut.cancel()


def _terminate(ex: ProcessPoolExecutor) -> None:
    """Stop a local pool now: on Ctrl-C, workers must not finish their queue first."""
    procs = list((getattr(ex, "_processes", None) or {}).values())
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=5)
    # With the workers gone, the pool's manager thread fails the pending futures and ends;
    # joining it here keeps interpreter shutdown from writing to its closed wake-up pipe.
    # Futures are deliberately not cancelled first: on Python 3.11 the manager thread then
    # raises InvalidStateError while failing them (fixed in 3.12).
    ex.shutdown(wait=True)