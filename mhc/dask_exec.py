"""Hashing on a Dask cluster (``--dask ADDRESS``): connecting, and the checks Dask does not make.

Dask holds tasks until a worker can run them, however long that takes: a scheduler that
never had workers, or whose workers all left (machines switched off, ``dask worker``
killed), kept a run waiting forever. mhc says so and ends the run instead. And Dask runs
whatever code a worker has: a worker without mhc died on every task, and one with another
mhc would hash with other code under this mhc's cache keys; both are refused first, and a
worker that joins later is refused by each task's own check (:func:`other_code`)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator
from concurrent.futures import Executor, Future
from contextlib import contextmanager

from .errors import EnvironmentFault, UsageError
from .options import dask_host_port

# Dask's WorkerStartTimeoutError is an asyncio.TimeoutError, the builtin one only from Python
# 3.11 on: on 3.10 a scheduler without workers ended "mhc failed unexpectedly"
_TIMEOUTS = (TimeoutError, asyncio.TimeoutError)

log = logging.getLogger(__name__)

DASK_WORKER_WAIT = 30.0  # seconds a scheduler without workers is given for one to join


@contextmanager
def dask_executor(address: str | None, executor: Executor | None) -> Iterator[Executor | None]:
    """The executor to hash on: the caller's, a Dask cluster's (``--dask``), or None (local pool).

    Dask's own ``concurrent.futures`` interface (``Client.get_executor``) runs the same
    batches the local pool runs: one code path. Workers must see the files at the same paths."""
    if executor is not None:  # the caller's: a Dask client's executor is checked and watched too
        client = getattr(executor, "_client", None) if type(executor).__module__.startswith("distributed") else None
        if client is None:
            yield executor
            return
        same_mhc(client, client.scheduler.address)
        yield WatchedExecutor(executor, client, client.scheduler.address)
        return
    if not address:
        yield None
        return
    from distributed import Client  # installed: checked by validate()

    _reachable(address)
    try:
        client = Client(address, timeout=20)
    except (OSError, *_TIMEOUTS) as e:
        raise _unreachable(address, e) from None
    except ValueError as e:  # an address validate() let through that Dask still refuses
        raise UsageError(f"--dask {address!r}: {e}; write e.g. --dask tcp://scheduler:8786") from None
    try:
        try:
            # without workers Dask holds the tasks until one joins: the run waited forever
            try:
                client.wait_for_workers(1, timeout=min(2.0, DASK_WORKER_WAIT))
            except _TIMEOUTS:
                log.warning("the Dask scheduler at %s has no workers yet; waiting up to %g s for one to join",
                            address, DASK_WORKER_WAIT)
                client.wait_for_workers(1, timeout=max(0.1, DASK_WORKER_WAIT - 2.0))
        except _TIMEOUTS:
            raise EnvironmentFault(f"the Dask scheduler at {address} has no workers (none joined in "
                                   f"{DASK_WORKER_WAIT:g} s); start `dask worker {address}` on machines that see the "
                                   f"input at the same path, or run without --dask") from None
        same_mhc(client, address)
        yield WatchedExecutor(client.get_executor(), client, address)
    finally:
        client.close()


def code_version() -> dict[str, str]:
    """mhc's version and its decoders' (part of every cache key): a process whose differ
    makes hashes that must not be cached under this mhc's keys."""
    from . import __version__
    from .crops import VERSION as CROPS_VERSION
    from .decode import DECODER_VERSION
    from .video import VIDEO_VERSION

    return {"mhc": __version__, "decoder": DECODER_VERSION, "video decoder": VIDEO_VERSION, "crops": str(CROPS_VERSION)}


def other_code(expected: dict[str, str]) -> EnvironmentFault | None:
    """The refusal for a worker whose :func:`code_version` is not ``expected`` (the
    submitter's), naming the worker when Dask runs it; None if it is the same."""
    here = code_version()
    if here == expected:  # (every batch asks: the common case first)
        return None
    where, fix = "a hashing process", "start the executor's processes with this mhc"
    try:
        from distributed import get_worker

        where, fix = f"the Dask worker {get_worker().address}", _DASK_FIX
    except (ImportError, ValueError):  # not on a Dask worker
        pass
    return _another_mhc(where, here, expected, "expected", fix)


_DASK_FIX = "install the same mhc on every worker, or run without --dask"


def _another_mhc(where: str, theirs: dict[str, str], ours: dict[str, str], word: str,
                 fix: str) -> EnvironmentFault | None:
    """The refusal of a worker (``where``) whose :func:`code_version` ``theirs`` differs
    from ``ours``, each difference said as "mhc 0.0.1 (here 0.2.0)"; None if none does."""
    code = [f"{k} {theirs.get(k)} ({word} {v})" for k, v in ours.items() if theirs.get(k) != v]
    if not code:
        return None
    return EnvironmentFault(f"{where} runs another mhc: {', '.join(code)}; its hashes would be cached as this "
                            f"mhc's: {fix}")


def code_identity() -> dict[str, str]:
    """What decides the hashes a worker computes: mhc's version, the decoders' versions
    (part of every cache key) and the libraries that decode and hash."""
    from importlib.metadata import PackageNotFoundError, version

    out = code_version()
    for lib in _LIBRARIES:
        try:
            out[lib] = version(lib)
        except PackageNotFoundError:
            out[lib] = "missing"
    return out


_LIBRARIES = ("Pillow", "ImageHash", "numpy", "scipy", "av")


def same_mhc(client, address: str) -> None:
    """Refuse workers that would hash with other code than this mhc's: the results are
    cached under this mhc's keys, so a worker without mhc, or with another version of it,
    would make the cache lie (and one without mhc died on every task, leaving the scheduler
    without workers). A different version of a decoding library is said, not refused."""
    import importlib.util

    try:
        specs = client.run(importlib.util.find_spec, "mhc")  # (a stdlib function: no mhc needed there)
    except Exception as e:  # noqa: BLE001 - a worker that fails to answer: its tasks will say more
        log.debug("could not ask the Dask workers for mhc: %s", e)
        return
    here = code_identity()
    lacking = sorted(w for w, spec in specs.items() if spec is None)
    if lacking:
        raise EnvironmentFault(f"{_workers(lacking)} of the Dask scheduler at {address} cannot import mhc; install "
                               f"it there (version {here['mhc']}, as here), or run without --dask")
    try:
        theirs = client.run(code_identity)
    except Exception as e:  # noqa: BLE001
        log.debug("could not ask the Dask workers for their mhc version: %s", e)
        return
    mine = {k: here[k] for k in code_version()}  # (the part of here's identity in the cache keys)
    for worker, ident in sorted(theirs.items()):
        refusal = _another_mhc(f"the Dask worker {worker}", ident, mine, "here", _DASK_FIX)
        if refusal is not None:
            raise refusal
        libs = [f"{k} {ident.get(k)} (here {here[k]})" for k in _LIBRARIES if ident.get(k) != here[k]]
        if libs:
            log.warning("the Dask worker %s decodes with other libraries: %s; its hashes may differ slightly from "
                        "this machine's", worker, ", ".join(libs))


def _workers(names: list[str]) -> str:
    if len(names) == 1:
        return f"the worker {names[0]}"
    return f"{len(names)} workers ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"


class WatchedExecutor(Executor):
    """Dask's executor, plus :meth:`check_workers`, which the hashing loop calls while it
    waits: a scheduler left without any worker for ``DASK_WORKER_WAIT`` seconds ends the run."""

    def __init__(self, executor: Executor, client, address: str) -> None:
        self._client = client
        self._address = address
        self._executor = executor
        self._alone_since: float | None = None
        try:  # the workers the start check (same_mhc) saw: each that joins later is checked on its own
            self._checked = set(client.nthreads())
        except Exception:  # noqa: BLE001 - then every worker is checked at the first look
            self._checked = set()

    def submit(self, fn, /, *args, **kwargs) -> Future:
        return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._executor.shutdown(wait=wait)

    def check_workers(self) -> None:
        """Raise EnvironmentFault if the scheduler has had no worker for DASK_WORKER_WAIT s,
        or a worker that joined since the start cannot import mhc."""
        try:
            names = set(self._client.nthreads())
        except Exception as e:  # the scheduler itself is gone: Dask cancels the tasks, said there
            log.debug("could not ask the Dask scheduler for its workers: %s", e)
            return
        if names - self._checked:
            self._check_joined(sorted(names - self._checked))
        workers = len(names)
        now = time.monotonic()
        if workers:
            if self._alone_since is not None:
                log.info("a worker joined the Dask scheduler at %s; hashing goes on", self._address)
            self._alone_since = None
            return
        if self._alone_since is None:
            self._alone_since = now
            log.warning("the Dask scheduler at %s has no workers left; waiting up to %g s for one to join",
                        self._address, DASK_WORKER_WAIT)
        elif now - self._alone_since >= DASK_WORKER_WAIT:
            raise EnvironmentFault(f"the Dask scheduler at {self._address} has had no workers for "
                                   f"{DASK_WORKER_WAIT:g} s, with files still to hash; the hashes made so far are "
                                   f"cached: start `dask worker {self._address}` and rerun, or run without --dask")

    def _check_joined(self, new: list[str]) -> None:
        """A worker without mhc that joins during the run cannot unpickle a task, so each
        task's own check never runs there: its tasks went from worker to worker until Dask
        gave up on them (KilledWorker), slowly and without a word on the cause."""
        import importlib.util

        self._checked.update(new)
        try:
            specs = self._client.run(importlib.util.find_spec, "mhc", workers=new)  # (stdlib: no mhc needed)
        except Exception as e:  # noqa: BLE001 - gone already, or not answering: its tasks will say more
            log.debug("could not ask the Dask workers %s for mhc: %s", new, e)
            return
        lacking = sorted(w for w, spec in specs.items() if spec is None)
        if lacking:
            raise EnvironmentFault(f"{_workers(lacking)}, which joined the Dask scheduler at {self._address} during "
                                   f"the run, cannot import mhc; install it there (version {code_identity()['mhc']}, "
                                   f"as here) and run again, or run without --dask")


def _reachable(address: str) -> None:
    """Say at once that nothing answers at a TCP or TLS address (refused, no such host):
    Dask's client retries until its timeout, 20 s, in case the scheduler is starting."""
    host_port = dask_host_port(address)
    if host_port is None:
        return
    try:
        socket.create_connection(host_port, timeout=5).close()
    except OSError as e:
        raise _unreachable(address, e.strerror or e) from None


def _unreachable(address: str, why) -> EnvironmentFault:
    return EnvironmentFault(f"cannot reach the Dask scheduler at {address} ({why}); check the address and that the "
                            f"scheduler runs, e.g. --dask tcp://scheduler:8786")
