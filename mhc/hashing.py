"""One file -> every configured hash; many files -> hashes, in parallel, through the cache.

Each file is decoded once for all algorithms. Work runs on a
``concurrent.futures.Executor``: a spawn-safe process pool locally, or any executor with
the same interface (a distributed engine's) at scale. Failures are values, never crashes.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, wait, FIRST_COMPLETED
from dataclasses import dataclass, field

from .algorithms import Algorithm
from .cache import HashCache
from .decode import DecodeError, DecodeSettings, open_image
from .discover import MediaFile
from .errors import FileError

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: called as work advances (the CLI draws bars with it)."""


@dataclass
class FileResult:
    """Hashes of one file (``hkey -> packed bits``), or the reason it failed."""

    path: str
    hashes: dict[str, bytes] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class HashPlan:
    """What to compute: algorithms plus decoder settings, and the cache keys they give."""

    algorithms: tuple[Algorithm, ...]
    decode: DecodeSettings

    @classmethod
    def build(cls, algorithms: list[Algorithm], *, exact: bool = False, max_pixels: int | None = None) -> "HashPlan":
        """Decoder settings that cover every algorithm: the smallest image that keeps each
        algorithm's :attr:`~mhc.algorithms.Algorithm.min_side` (full resolution when ``exact``)."""
        min_side = 0 if exact else max(a.min_side for a in algorithms)
        kw = {} if max_pixels is None else {"max_pixels": max_pixels}
        return cls(tuple(algorithms), DecodeSettings(min_side=min_side, color=any(a.needs_color for a in algorithms), **kw))

    def hkey(self, algo: Algorithm) -> str:
        """Cache key of one algorithm's hashes. It names the algorithm's own pixel budget,
        not the plan's, so adding an algorithm that needs more pixels does not invalidate
        the others' cached hashes (all are within the measured tolerance of imagehash)."""
        if self.decode.exact:
            return f"{algo.key}|{self.decode.cache_tag()}"
        return f"{algo.key}|{self.decode.cache_tag()}{algo.min_side}"

    @property
    def dkey(self) -> str:
        return self.decode.cache_tag()


def hash_file(path: str, plan: HashPlan) -> FileResult:
    """Decode ``path`` once and compute every algorithm of ``plan``. Never raises for bad files."""
    try:
        image = open_image(path, plan.decode)
    except DecodeError as e:
        return FileResult(path, error=str(e))
    result = FileResult(path)
    reduced: dict[int, object] = {1: image}
    try:
        for algo in plan.algorithms:
            factor = 1
            if not plan.decode.exact:
                # Box-reduce to what this algorithm needs before imagehash's Lanczos resize:
                # resampling, not decoding, dominated hashing of draft-decoded photos.
                factor = max(1, min(image.size) // algo.min_side)
            if factor not in reduced:
                reduced[factor] = image.reduce(factor)
            result.hashes[plan.hkey(algo)] = algo.hash_image(reduced[factor])
    except Exception as e:  # a hash library failing on an odd image is a file error, not a crash
        return FileResult(path, error=f"hashing failed ({type(e).__name__}: {e})")
    return result


def hash_batch(paths: list[str], plan: HashPlan) -> list[FileResult]:
    """Worker task: a small batch of files (amortises inter-process overhead)."""
    return [hash_file(p, plan) for p in paths]


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

    hashes: dict[str, dict[str, bytes]]  # path -> algo.key -> packed bits
    errors: list[FileError]
    stats: HashStats


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
    hkeys = {plan.hkey(a): a for a in plan.algorithms}
    cached, cached_fail = cache.lookup(files, list(hkeys), plan.dkey)

    out: dict[str, dict[str, bytes]] = {}
    errors: list[FileError] = []
    stats = HashStats()
    todo: list[str] = []
    for f in files:
        if f.path in cached_fail:
            errors.append(FileError(f.path, cached_fail[f.path]))
            stats.cached += 1
            continue
        have = cached.get(f.path, {})
        if len(have) == len(hkeys):
            out[f.path] = {hkeys[k].key: v for k, v in have.items()}
            stats.cached += 1
        else:
            todo.append(f.path)

    total = len(files)
    done = total - len(todo)
    if progress:
        progress("hash", done, total)
    if not todo:
        return HashResults(out, sorted(errors, key=lambda e: e.path), stats)

    # Only the algorithms some file still lacks; a file missing any is decoded once.
    missing = [a for k, a in hkeys.items() if any(k not in cached.get(p, {}) for p in todo)]
    work_plan = HashPlan(tuple(missing), plan.decode)

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
        if res.error is not None:
            errors.append(FileError(res.path, res.error))
            pending_f.append((res.path, plan.dkey, res.error))
            stats.failed += 1
        else:
            merged = {hkeys[k].key: v for k, v in cached.get(res.path, {}).items()}
            for k, v in res.hashes.items():
                merged[hkeys[k].key] = v
                pending_h.append((res.path, k, v))
            out[res.path] = merged
            stats.hashed += 1
        # by count, and at least every second: a killed run loses at most a second of work
        if len(pending_h) + len(pending_f) >= flush_every or time.monotonic() - last_flush > 1.0:
            flush()

    try:
        for res in _run(todo, work_plan, workers, executor):
            take(res)
            if progress:
                progress("hash", done, total)
    finally:
        flush()  # also on Ctrl-C: what was computed is kept
    return HashResults(out, sorted(errors, key=lambda e: e.path), stats)


def _run(paths: list[str], plan: HashPlan, workers: int, executor: Executor | None) -> Iterator[FileResult]:
    workers = workers or os.cpu_count() or 1
    if executor is None and (workers == 1 or len(paths) < MIN_FILES_FOR_POOL):
        for p in paths:
            yield hash_file(p, plan)
        return
    n_workers = workers if executor is None else max(workers, 2)
    # ~8 batches per worker balances load; at most 32 files so progress stays lively
    size = max(1, min(32, len(paths) // (n_workers * 8)))
    batches = [paths[i:i + size] for i in range(0, len(paths), size)]
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