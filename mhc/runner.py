"""Many files -> hashes, in parallel, through the cache.

Work runs on a ``concurrent.futures.Executor``: a local process pool, or any executor
with the same interface (a distributed engine's) at scale. Results reach the cache every
second, so an interrupted run keeps them. A worker that dies (the kernel's out-of-memory
killer, a signal) costs only the file that killed it: the files of the lost batches are
retried one per task in a new pool, those lost again one per process, and a file that kills
its process there is reported.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError, Executor
from dataclasses import dataclass, field

from .cache import Cached, FileInfo, HashCache
from .dask_exec import code_version, other_code
from .decode import GONE, too_large
from .discover import MediaFile
from .errors import EnvironmentFault, FileError, MhcError
from .events import Progress, report
from .hashing import FileResult, HashPlan, hash_file
from .pool import (MIN_FILES_FOR_POOL, how_it_ended, in_pools, lost, pool_size, start_method, time_limit, wait_first,
                   worker_init)

log = logging.getLogger(__name__)


def hash_batch(items: list[tuple[str, str]], plan: HashPlan, expect: dict[str, str] | None = None,
               timeout: float | None = None) -> list[FileResult]:
    """Worker task: a small batch of ``(path, kind)`` (amortises inter-process overhead).
    ``expect``: the submitter's :func:`~mhc.dask_exec.code_version`; a worker running
    other code raises EnvironmentFault instead of hashing (Dask workers are checked when a
    run starts, but one may join later). ``timeout``: seconds per file, after which the
    kernel ends this process (:func:`~mhc.pool.time_limit`; in a local pool's worker only)."""
    if expect is not None:
        refusal = other_code(expect)
        if refusal is not None:
            raise refusal
    out = []
    for p, kind in items:
        with time_limit(timeout):
            out.append(hash_file(p, plan, kind))
    return out


def warm(plan: HashPlan, videos: bool = False) -> None:
    """Import, in this process, what hashing will load (SciPy, PyWavelets, imagehash; PyAV
    for videos) before a forked pool starts: each worker then inherits it instead of
    importing it again on its first file (about 0.13 s each)."""
    if start_method() != "fork":
        return
    from PIL import Image

    Image.preinit()  # the common formats' plugins (Pillow before 12 imported them on the first open)
    for a in plan.algorithms:
        a.hash_image(Image.new("RGB" if a.needs_color else "L", (a.min_side, a.min_side)))
    if videos:
        import av  # noqa: F401


@dataclass
class HashStats:
    """Per file, exactly one of: decoded now, served from the cache, or failed (so
    ``decoded + cached + failed`` is the number of files hashed). Per algorithm, how many
    files' hashes were computed now and how many came from the cache."""

    decoded: int = 0
    cached: int = 0
    failed: int = 0
    shared: int = 0  # of ``decoded``: hard links given the result of another name of their file
    computed_by_algo: dict[str, int] = field(default_factory=dict)
    cached_by_algo: dict[str, int] = field(default_factory=dict)


@dataclass
class HashResults:
    """Cache values for every usable file (path -> cache key -> value), facts about the
    files, and the files that failed."""

    values: dict[str, dict[str, bytes]]
    info: dict[str, FileInfo]
    errors: list[FileError]
    stats: HashStats


def compute_hashes(
    files: list[MediaFile],
    plan: HashPlan,
    cache: HashCache,
    *,
    workers: int = 0,
    executor: Executor | None = None,
    progress: Progress | None = None,
    flush_every: int = 256,
    file_timeout: float | None = None,
) -> HashResults:
    """Hash ``files`` with ``plan``, using and filling ``cache``.

    Only missing (file, algorithm) pairs are computed; a file is decoded once for all
    its missing algorithms. ``executor``: run batches there (e.g. a Dask client's
    executor); otherwise a local process pool of ``workers`` (0 = all cores).
    Results reach the cache in batches as they arrive, so an interrupted run keeps them.
    ``file_timeout``: a file whose decoding takes longer in a local worker is reported and
    skipped (see :func:`run_batches`).
    """
    by_path = {f.path: f for f in files}
    kinds = sorted({f.kind for f in files})
    cached = cache.lookup(files, [k for kind in kinds for k in plan.keys(kind)], [plan.dkey(k) for k in kinds],
                          fits={k: n for kind in kinds for k, n in plan.fits(kind).items()})
    out: dict[str, dict[str, bytes]] = {}
    info: dict[str, FileInfo] = dict(cached.info)
    errors: list[FileError] = []
    stats = HashStats()
    todo: list[MediaFile] = []
    keys_of = {kind: plan.keys(kind) for kind in kinds}  # once per kind: per file it cost 1 s at 100,000
    for f in files:
        reason = _cached_failure(f, plan, cached)
        if reason is not None:
            errors.append(FileError(f.path, reason))
            stats.failed += 1
            continue
        have = cached.values.get(f.path, {})
        wanted = keys_of[f.kind]
        if all(k in have for k in wanted):
            out[f.path] = {k: have[k] for k in wanted}
            stats.cached += 1
        else:
            todo.append(f)
    total = len(files)
    done = total - len(todo)
    report(progress, "hash", done, total)
    fresh: dict[str, set[str]] = {}  # path -> keys computed in this run
    if not todo:
        return _results(out, info, errors, stats, plan, by_path, fresh)

    # Only the algorithms some file still lacks; a file missing any is decoded once.
    missing = tuple(a for a in plan.algorithms
                    if any(k not in cached.values.get(f.path, {}) for f in todo for k in plan.keys(f.kind, (a,))))
    work_plan = dataclasses.replace(plan, algorithms=missing or plan.algorithms)
    pending: list[tuple[MediaFile, FileInfo | None, dict[str, bytes], tuple[str, str] | None]] = []
    last_flush = time.monotonic()

    def flush() -> None:
        nonlocal last_flush
        if pending:
            cache.store(pending)
            pending.clear()
        last_flush = time.monotonic()

    def take(res: FileResult) -> None:
        nonlocal done
        done += 1
        f = by_path[res.path]
        if res.error == GONE and executor is not None and os.path.exists(res.path):
            # hashed elsewhere (--dask): every file would be "gone", and the run would end
            # with nothing to cluster, exit 0
            raise EnvironmentFault(f"the hashing workers cannot see {res.path}, which is here: they must see the "
                                   f"input at the same path (mount it there on every worker), or run without --dask")
        if res.error is not None:
            errors.append(FileError(res.path, res.error))
            stats.failed += 1
            if res.cacheable:
                pending.append((f, res.info, {}, (plan.dkey(f.kind), res.error)))
        else:
            merged = {k: v for k, v in cached.values.get(res.path, {}).items() if k in plan.keys(f.kind)}
            merged.update(res.values)
            pending.append((f, res.info, res.values, None))
            out[res.path] = merged
            if res.info is not None:
                info[res.path] = res.info
            stats.decoded += 1
            fresh[res.path] = set(res.values)
        # by count, and at least every second: a killed run loses at most a second of work
        if len(pending) >= flush_every or time.monotonic() - last_flush > 1.0:
            flush()

    # Hard links (one file, several names: backup snapshots made with rsync --link-dest or
    # rsnapshot hold every photo once per snapshot) are decoded once; each name gets the
    # result and its own cache rows. inode 0: a file system without inode numbers.
    names: dict[tuple[int, int, str], list[MediaFile]] = {}
    for f in todo:
        names.setdefault((f.dev, f.ino, f.kind) if f.ino else (0, id(f), f.kind), []).append(f)
    others = {group[0].path: group[1:] for group in names.values() if len(group) > 1}
    try:
        for res in run_batches([(g[0].path, g[0].kind) for g in names.values()], work_plan, workers, executor,
                               file_timeout):
            take(res)
            for f in others.get(res.path, ()):
                take(dataclasses.replace(res, path=f.path))
                stats.shared += res.error is None
            report(progress, "hash", done, total)
    finally:
        flush()  # also on Ctrl-C: what was computed is kept
    return _results(out, info, errors, stats, plan, by_path, fresh)


def _results(out, info, errors, stats: HashStats, plan: HashPlan, by_path, fresh) -> HashResults:
    for a in plan.algorithms:
        now = sum(1 for p, keys in fresh.items() if plan.hkey(a, by_path[p].kind) in keys)
        stats.computed_by_algo[a.key] = now
        stats.cached_by_algo[a.key] = len(out) - now
    return HashResults(out, info, sorted(errors, key=lambda e: e.path), stats)


def _cached_failure(f: MediaFile, plan: HashPlan, cached: Cached) -> str | None:
    """A cached content failure, or the --max-pixels refusal of a cached image (limits are
    options: applied to what the cache knows of the file, never cached themselves)."""
    reason = cached.failures.get(f.path, {}).get(plan.dkey(f.kind))
    if reason is not None:
        return reason
    i = cached.info.get(f.path)
    if f.kind == "image" and i is not None and i.width and i.height and i.width * i.height > plan.decode.max_pixels:
        return str(too_large(i.width, i.height, plan.decode.max_pixels))
    return None


DIED = "the decoder died ({how}) on this file: likely out of memory; it was skipped"
TOO_SLOW = ("its decoding took longer than {limit:g} s (a damaged file that hangs the decoder, or a disk that "
            "stopped answering); it was skipped: raise --file-timeout if it is only slow")


def run_batches(items: list[tuple[str, str]], plan: HashPlan, workers: int, executor: Executor | None,
                timeout: float | None = None) -> Iterator[FileResult]:
    """Results for ``(path, kind)`` items, in completion order. The files of the batches
    lost with a dead worker are retried one file per task in a new pool; those lost again
    are retried one file per process, and a file that kills its process there is reported.
    ``timeout``: seconds per file in a local pool's workers, after which the kernel ends the
    worker (a decoder stuck in C code cannot be stopped any other way): the same path as a
    dead worker, so a file that hangs is reported after about three times ``timeout``. Files
    decoded in this process (fewer than MIN_FILES_FOR_POOL pictures and no video) and on an
    executor have no limit."""
    workers = pool_size(workers, len(items), warn=True) if executor is None else workers or os.cpu_count() or 1
    videos = any(kind == "video" for _, kind in items)
    if executor is None and len(items) < MIN_FILES_FOR_POOL and not videos:
        # in this process: starting a pool would cost more for a few pictures. One worker
        # still gets a pool of one (no slower: 60 photos of 12 MP, -j 1, 2.9-3.4 s either way),
        # and so do a few videos (4: 1.10-1.21 s against 1.11-1.54 s here), so that a decoder
        # that crashes (a segfault in a codec) or hangs (FFmpeg) costs its file, not the run
        for p, kind in items:
            yield hash_file(p, plan, kind)
        return
    n_workers = workers if executor is None else max(workers, 2)
    if executor is None:
        warm(plan, videos)
    # an executor's workers are not this process's forks: each batch checks its worker's code
    expect = code_version() if executor is not None else None
    limit = timeout if executor is None else None
    for _, results in in_pools(functools.partial(hash_batch, plan=plan, expect=expect, timeout=limit),
                               guided_batches(items, n_workers), workers,
                               executor, n_workers, lambda item: _alone(item, plan, executor, limit)):
        yield from results


def guided_batches(items: list, n_workers: int, most: int = 32) -> list[list]:
    """``items`` cut into batches that shrink as the work runs out (guided scheduling):
    each is 1/(8 x workers) of what is left, at most ``most`` files (progress stays lively)
    and at least one. Large batches amortise the inter-process overhead; the single files at
    the end keep every worker busy until the last one (equal batches of 7 left one worker
    decoding its last batch of 12 MP files alone for a quarter of a second at 120 files)."""
    out, i = [], 0
    while i < len(items):
        size = max(1, min(most, (len(items) - i) // (n_workers * 8)))
        out.append(items[i:i + size])
        i += size
    return out


def _alone(item: tuple[str, str], plan: HashPlan, executor: Executor | None,
           timeout: float | None = None) -> FileResult:
    """Hash one file in a process of its own: if it dies, only this file is lost."""
    path, kind = item
    if executor is not None:  # a distributed executor: one task for this one file
        fut = executor.submit(hash_batch, [item], plan, code_version())
        try:  # (no worker left ends the run: not this file's fault)
            wait_first([fut], executor)
        except BaseException:
            fut.cancel()
            raise
        try:
            return fut.result()[0]
        except CancelledError:
            raise lost() from None
        except MhcError:  # a worker running other code (hash_batch): not this file's fault
            raise
        except Exception as e:  # it gave up on it (KilledWorker...)
            return FileResult(path, error=DIED.format(how=type(e).__name__), cacheable=False)
    ctx = multiprocessing.get_context(start_method())
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_one, args=(send, item, plan, timeout), daemon=True)
    proc.start()
    send.close()
    try:
        return receive.recv()
    except EOFError:  # the process died before it could answer
        proc.join()
        if timeout and proc.exitcode == -signal.SIGALRM:  # (time_limit's end; 0: no limit was set)
            return FileResult(path, error=TOO_SLOW.format(limit=timeout), cacheable=False)
        return FileResult(path, error=DIED.format(how=how_it_ended(proc.exitcode)), cacheable=False)
    finally:
        receive.close()
        if proc.is_alive():
            proc.terminate()
        proc.join()


def _one(send, item: tuple[str, str], plan: HashPlan, timeout: float | None) -> None:
    worker_init()
    send.send(hash_batch([item], plan, timeout=timeout)[0])
    send.close()
