"""Local process pools: how many processes, how they start, how they stop.

Shared by hashing (:mod:`mhc.runner`) and the report's thumbnails (:mod:`mhc.thumbs`).
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait

from .forked import die_with_parent

log = logging.getLogger(__name__)

MIN_FILES_FOR_POOL = 24  # fewer files are done in this process: starting a pool costs more


def worker_init() -> None:
    # Ctrl-C and a closed terminal's SIGHUP (both sent to the whole foreground group) are
    # handled once, by the main process, which then stops the pool; SIGTERM (which the
    # pool's own shutdown sends) ends a worker at once, whatever the command line made of it
    # in the main process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # If the main process is killed (kill -9), take the workers down with it (Linux).
    die_with_parent()


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
