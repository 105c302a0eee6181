"""Local process pools: how many processes, how they start and stop, and running batches
through them (or a distributed executor) so that a dead worker costs only what it was doing.

Shared by hashing (:mod:`mhc.runner`) and the report's thumbnails (:mod:`mhc.thumbs`).
"""
from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, CancelledError, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any

from .errors import EnvironmentFault, MhcError
from .forked import die_with_parent

log = logging.getLogger(__name__)

MIN_FILES_FOR_POOL = 24  # fewer files are done in this process: starting a pool costs more


def quiet_decoders() -> None:
    """Pillow writes to stderr what it mends in a file it decodes (corrupt EXIF data, a tag
    past the end of the file, a palette's transparency given as bytes): two lines with a path
    of Pillow's own source and no word of which file, over the progress bars, once per kind
    and process. The picture is decoded all the same, and a file that cannot be is reported
    by name. Called in mhc's own processes only (the command line and its workers): a
    program that calls mhc keeps its warnings as it set them."""
    warnings.filterwarnings("ignore", module=r"(PIL|pillow_heif)(\.|$)")


def worker_init() -> None:
    # Ctrl-C and a closed terminal's SIGHUP (both sent to the whole foreground group) are
    # handled once, by the main process, which then stops the pool; SIGTERM (which the
    # pool's own shutdown sends) ends a worker at once, whatever the command line made of it
    # in the main process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)  # time_limit's end: the kernel ends the process
    # If the main process is killed (kill -9), take the workers down with it (Linux).
    die_with_parent()
    quiet_decoders()
    # Nothing inherited from the calling process is ever collected here. A caller that used
    # PyAV may leave a codec context in a reference cycle; freed by this process's collector,
    # FFmpeg joins decoding threads that exist only in the caller, and the worker hangs until
    # --file-timeout (seen with PyAV 17.0 in the test suite). Python's documentation advises
    # the same for forked children (fewer pages copied on write, too).
    gc.freeze()


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """In a worker process only: if the block takes longer than ``seconds``, the kernel
    ends the process (SIGALRM, left at its default action by :func:`worker_init`). A decoder
    stuck inside C code (FFmpeg on a damaged stream, a read from a share that stopped
    answering) never returns to Python, so no exception could stop it; its pool then breaks
    as for any dead worker, and the file is found and reported as the one that killed it.
    None or 0: no limit."""
    if not seconds:
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def start_method() -> str:
    """``fork`` on Linux: workers start in milliseconds, and a script that calls mhc at
    its top level works as written (spawn and forkserver re-run the calling script in
    every worker, which needs an ``if __name__ == "__main__"`` guard). Workers only decode
    and hash, never touching the parent's threads or open databases. Elsewhere (macOS,
    Windows, where fork is unsafe or missing) ``spawn``."""
    return "fork" if sys.platform.startswith("linux") else "spawn"


PROCESSES_PER_CPU = 4  # at most this many workers per CPU, whatever -j asks


def pool_size(workers: int, tasks: int, *, warn: bool = False) -> int:
    """How many processes a local pool of ``workers`` (0: one per CPU) starts for ``tasks``.

    Never more than the tasks, nor than 4 per CPU: decoding is CPU-bound, and Python's pool
    forks all its processes at once, so ``-j 100000`` forked until the machine ran out (and
    a Ctrl-C in the middle could hang on a half-made worker). ``warn``: say so above the cap."""
    cpus = os.cpu_count() or 1
    wanted = workers or cpus
    if warn and wanted > PROCESSES_PER_CPU * cpus:
        log.warning("-j %d: at most %d processes are started (%d per CPU on %d CPUs): hashing is CPU-bound",
                    wanted, PROCESSES_PER_CPU * cpus, PROCESSES_PER_CPU, cpus)
    return max(1, min(wanted, PROCESSES_PER_CPU * cpus, tasks))


def local_executor(workers: int, max_tasks: int | None = None) -> ProcessPoolExecutor:
    """A local process pool of ``workers`` processes (see :func:`start_method`, :func:`pool_size`)."""
    kw = {"max_tasks_per_child": max_tasks} if max_tasks else {}
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(start_method()),
                               initializer=worker_init, **kw)


def wait_first(futures: list[Future], ex: Executor) -> set[Future]:
    """The futures that are done, once one is. An executor with ``check_workers`` (mhc's
    Dask executor) is asked every second meanwhile: it ends the run when no worker is left
    to run them, where Dask itself would wait forever."""
    check = getattr(ex, "check_workers", None)
    while True:
        finished, _ = wait(futures, timeout=None if check is None else 1.0, return_when=FIRST_COMPLETED)
        if finished:
            return finished
        check()


def how_it_ended(exitcode: int | None) -> str:
    """A dead process's exit code as words: "killed by signal 9", "exit status 1"."""
    return f"killed by signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"exit status {exitcode}"


def terminate(ex: ProcessPoolExecutor) -> None:
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


def in_pools(task: Callable[[list], list], batches: list[list], workers: int, executor: Executor | None,
             n_workers: int, alone: Callable[[Any], Any]) -> Iterator[tuple[list, list]]:
    """Each batch with ``task(batch)``'s results (one per item), in completion order, run on
    ``executor`` or in local pools of ``workers`` processes, at most ``n_workers`` x 4 batches
    in flight. A worker that dies (the kernel's out-of-memory killer, a signal) loses the
    batches in flight: their items are retried one per task in a new pool, those lost again
    one per process: ``alone(item)`` gives that item's result (and says why it has none).
    Shared by hashing and the report's thumbnails. The generator closed early (Ctrl-C) stops
    a local pool at once, not after its queue."""
    suspects: list = []
    yield from _pooled(task, batches, workers, executor, n_workers, suspects)
    if suspects and executor is None:
        # Most suspects were only in flight beside the item that killed the worker. Straight
        # to one process each, they cost a process start apiece, one after another: 45 s
        # instead of 22-25 for one kill -9 in a 407-file run (2 workers; docs/benchmarks.md),
        # and minutes with many workers (up to workers x 4 x 32 files). One item per task in
        # a pool instead: a death then loses only the single items in flight, and only they
        # go on alone.
        again: list = []
        yield from _pooled(task, [[item] for item in suspects], workers, None, n_workers, again)
        suspects = again
    for item in suspects:
        yield [item], [alone(item)]


def _pooled(task, batches, workers, executor, n_workers, suspects) -> Iterator[tuple[list, list]]:
    own = executor is None
    ex = local_executor(workers) if own else executor
    futures: dict[Future, list] = {}
    finished_ok = False

    def broken() -> None:
        # a worker died (out-of-memory killer, a signal): every batch in flight is lost;
        # their files are retried one by one later, the rest go to a new pool
        nonlocal ex, own
        for batch in futures.values():
            suspects.extend(batch)
        futures.clear()
        if own:
            terminate(ex)
        ex, own = local_executor(workers), True  # never reuse a broken pool, ours or not

    def submit(batch: list) -> None:
        try:
            futures[ex.submit(task, batch)] = batch
        except BrokenProcessPool:  # it broke since the last wait (a worker killed at once): the
            broken()  # batch was never run, so it is not a suspect; it goes to the new pool
            futures[ex.submit(task, batch)] = batch

    it = iter(batches)
    try:
        # a bounded number of batches in flight: memory stays flat for huge inputs
        for b in it:
            submit(b)
            if len(futures) >= n_workers * 4:
                break
        while futures:
            finished = wait_first(list(futures), ex)
            for fut in finished:
                batch = futures.pop(fut)
                try:
                    results = fut.result()
                except BrokenProcessPool:
                    suspects += batch
                    broken()
                    break
                except CancelledError:
                    if own:
                        raise
                    raise lost() from None
                except MhcError:  # the task's own refusal (a worker running other code): the run's
                    raise
                except Exception as e:  # a distributed executor lost the task (KilledWorker...)
                    if own:
                        raise
                    log.debug("batch failed on the executor (%s); retrying its files one by one", e)
                    suspects += batch
                    continue
                yield batch, results
            while len(futures) < n_workers * 4:
                nxt = next(it, None)
                if nxt is None:
                    break
                submit(nxt)
        finished_ok = True
    finally:
        if own:
            if finished_ok:
                ex.shutdown(wait=True)
            else:
                terminate(ex)
        else:
            for fut in futures:
                fut.cancel()


def lost() -> EnvironmentFault:
    """A distributed executor cancelled tasks mhc did not cancel: Dask's client does so for
    every task when it loses its scheduler (then its futures never finish again)."""
    return EnvironmentFault("the hashing tasks were cancelled by the executor: the connection to the Dask scheduler "
                            "was lost (it stopped, or the network failed); the hashes made so far are cached, so run "
                            "again once it is back")
