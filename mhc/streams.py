"""Standard output and error as the command line writes to them.

A full disk under ``> pairs.csv``, ``>&-`` or ``2>/dev/full`` used to end in "mhc failed
unexpectedly: OSError", after a run that had finished (and that line said "the previous
output is unchanged"). Here the streams are wrapped once, in :func:`guarded_streams`:

- standard output that refuses a write raises :class:`StdoutFault`, one line with the
  reason (exit 3); one closed by the user raises :class:`StdoutClosed` (exit 2);
- a closed pipe (``mhc pairs | head``) is left to click, which exits 1 quietly;
- standard error that refuses a write is given up on: progress bars and warnings are lost,
  but the run goes on and its exit status still says how it ended.
"""
from __future__ import annotations

import errno
import io
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from .errors import EnvironmentFault, UsageError


class StdoutFault(EnvironmentFault):
    """Standard output refused a write (full disk, I/O error)."""


class StdoutClosed(UsageError):
    """Standard output was closed by the user (``>&-``): nowhere to write the results."""


def _closed() -> StdoutClosed:
    return StdoutClosed("standard output is closed (>&-); redirect it to a file or a pipe instead")


def require_stdout() -> None:
    """Refuse now, not after hours of hashing, a command whose results go to a closed stdout."""
    stream = sys.stdout._stream if isinstance(sys.stdout, _Guarded) else sys.stdout
    if stream is None:
        raise _closed()


class _Guarded:
    """A stream (text, or its binary buffer) whose write and flush failures become mhc's;
    everything else is passed through (rich and the csv module ask for isatty, encoding...)."""

    def __init__(self, stream, name: str) -> None:
        self._stream, self._name = stream, name

    def __getattr__(self, attr: str):
        if self._stream is None:  # closed before mhc started: Python made it None
            if attr == "isatty":
                return lambda: False
            raise AttributeError(attr)
        return getattr(self._stream, attr)

    @property
    def buffer(self) -> "_Guarded":
        if self._stream is None and self._name == "stdout":
            raise _closed()
        return _Guarded(getattr(self._stream, "buffer", None), self._name)

    def write(self, data):
        try:
            if self._stream is None:
                self._failed(None)
                return len(data)
            return self._stream.write(data)
        except OSError as e:
            self._failed(e)
            return len(data)  # standard error given up on: as if written

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            if self._stream is not None:
                self._stream.flush()
        except OSError as e:
            self._failed(e)

    def _failed(self, e: OSError | None) -> None:
        if e is not None and e.errno == errno.EPIPE:
            raise e  # the reader is gone (| head): click's convention, exit 1 and no line
        if e is not None:
            _silence(self._stream)
        if self._name == "stderr":
            return  # nowhere left to say anything; the exit status still does
        if e is None:
            raise _closed()
        raise StdoutFault(f"cannot write to standard output ({e.strerror or e}); free space where it goes "
                          f"or redirect it elsewhere") from None


def _silence(stream) -> None:
    # What the stream still holds is flushed again when Python exits; to the refusing file
    # that prints "Exception ignored" and turns the exit status into 120. Pointing the
    # descriptor at /dev/null lets that last flush succeed (as Python's docs advise for EPIPE).
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


@contextmanager
def binary_stdout() -> Iterator[BinaryIO]:
    """Standard output's own binary buffer, for many small writes (through the wrapper each
    cost 0.7 µs more: +0.35 s for 500,000 CSV rows); its failures are said as the wrapper says them."""
    guarded = sys.stdout if isinstance(sys.stdout, _Guarded) else _Guarded(sys.stdout, "stdout")
    buffer = guarded.buffer._stream  # the closed stream is refused here
    try:
        yield buffer
    except OSError as e:
        guarded._failed(e)
        raise


@contextmanager
def guarded_streams() -> Iterator[None]:
    """Wrap ``sys.stdout`` and ``sys.stderr`` for one command; restore them after (unless
    click replaced them meanwhile, after a closed pipe)."""
    saved = sys.stdout, sys.stderr
    strict = [s for s in saved if isinstance(s, io.TextIOWrapper) and s.errors == "strict"]
    for s in strict:  # a terminal in latin-1 or ASCII (PYTHONIOENCODING, an old locale): "▶" and "é"
        s.reconfigure(errors="backslashreplace")  # are written as escapes, not a UnicodeEncodeError
    guarded = _Guarded(sys.stdout, "stdout"), _Guarded(sys.stderr, "stderr")
    sys.stdout, sys.stderr = guarded
    try:
        yield
    finally:
        for s in strict:
            s.reconfigure(errors="strict")
        if sys.stdout is guarded[0]:
            sys.stdout = saved[0]
        if sys.stderr is guarded[1]:
            sys.stderr = saved[1]
