"""How the command line stops on a signal: SIGTERM and SIGHUP become exceptions that unwind
a run as Ctrl-C does (workers stopped, staging cleared, hashes kept, one line), each with its
own exit status. The library leaves signals alone: a program that calls mhc.run keeps its own
handling."""
from __future__ import annotations

import functools
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import EXIT_HANGUP, EXIT_INTERRUPTED, EXIT_TERMINATED


INTERRUPTED = "Interrupted."  # the start of a Ctrl-C's line (SIGTERM and SIGHUP: their ``said``)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a service manager), handled as Ctrl-C is: the workers
    stopped, the previous output left as it was, the hashes so far kept, one line, exit 143.
    Python's default would end the process at once, silently, leaving the staging folder
    for the next run to clear."""

    said = "Stopped (SIGTERM)."  # the start of its line (Ctrl-C's: INTERRUPTED)
    status = EXIT_TERMINATED


class HungUp(Terminated):
    """SIGHUP: the terminal or SSH session closed under a run (not under ``nohup``, which
    ignores it). Handled as SIGTERM is, exit 129; Python's default ended the process at
    once, leaving the staging folder behind and the workers to die on their own."""

    said = "Stopped (SIGHUP: the terminal closed)."
    status = EXIT_HANGUP


class Stopped(Exception):
    """A Ctrl-C, SIGTERM or SIGHUP that reached click's own code: while it read the command
    line, or in a command's last lines (printing its results, outside ``user_errors``).
    typer turns a KeyboardInterrupt there into exit status 130 without a word, whichever
    signal it was; as this (not a KeyboardInterrupt) it passes typer by, and ``mhc.cli.main``
    says it in one line with its own status. ``done``: what had been done."""

    def __init__(self, cause: KeyboardInterrupt, done: str = ""):
        super().__init__(done)
        self.said = getattr(cause, "said", INTERRUPTED)
        self.status = getattr(cause, "status", EXIT_INTERRUPTED)
        self.done = done


def _on_signal(owner: int, signum, frame) -> None:
    if os.getpid() != owner:
        # a forked child that has not yet set its own handler (a worker, the link maker,
        # between fork and its first line): it ends as the signal ends a process, instead of
        # raising inside Python's after-fork hooks ("Exception ignored ... Terminated")
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise HungUp() if signum == signal.SIGHUP else Terminated()


@contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """SIGTERM, and SIGHUP unless it is ignored (``nohup``, or a parent that ignores it:
    then it stays ignored), raise :class:`Terminated` / :class:`HungUp` in this process
    while the block runs; the previous handlers come back after it. Hashing workers and
    forked children reset them (runner, forked)."""
    handler = functools.partial(_on_signal, os.getpid())
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, handler)}
    hup = signal.getsignal(signal.SIGHUP)
    if hup not in (signal.SIG_IGN, None):
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def guard_start() -> None:
    """While the command line's modules load (about a quarter of a second, before ``main``
    sets its handlers), a Ctrl-C printed a traceback of Python's import machinery, and SIGTERM
    or SIGHUP ended the process without a word. Each now ends it in its own status with one
    line: nothing was done yet. Signals that are ignored (``nohup``, a background job) stay
    ignored. Called by ``mhc/__init__.py`` only when mhc is loaded as the command."""
    for sig, said, status in ((signal.SIGINT, INTERRUPTED, EXIT_INTERRUPTED),
                              (signal.SIGTERM, Terminated.said, EXIT_TERMINATED),
                              (signal.SIGHUP, HungUp.said, EXIT_HANGUP)):
        if signal.getsignal(sig) not in (signal.SIG_IGN, None):
            signal.signal(sig, functools.partial(_before_start, said, status))


def end_start_guard() -> None:
    """Back to Python's own handling (Ctrl-C raises KeyboardInterrupt; SIGTERM and SIGHUP end
    the process) wherever :func:`guard_start` set its handler: from here on, "nothing was
    done" may not be true."""
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL,
                signal.SIGHUP: signal.SIG_DFL}
    for sig, default in defaults.items():
        if getattr(signal.getsignal(sig), "func", None) is _before_start:
            signal.signal(sig, default)


def _before_start(said: str, status: int, signum, frame) -> None:
    try:
        os.write(2, f"{said} Nothing was done.\n".encode())
    except OSError:  # (a terminal already gone)
        pass
    os._exit(status)  # (only modules were loading: nothing to clean up)
