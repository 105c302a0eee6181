"""One function run in a forked child process while this process goes on with other work.

A run's last stage has two parts that share no state: making the tree's links (system calls,
which on a 2-core machine are kernel CPU time) and rendering the report (Python). In one
process the two take their sum even with the links on threads: the rendering then waits for
the CPU and the GIL (measured: a median of 3.27 s against 3.15 s for the whole 120-file run).
In a child forked after the plan is made, the links need nothing passed to them, and the two
overlap on the two cores. Linux only (fork is unsafe on macOS and missing on Windows); the
caller runs the function in-process elsewhere.
"""
from __future__ import annotations

import os
import pickle
import signal
import sys
from collections.abc import Callable

from .errors import EnvironmentFault, MhcError


class Died(EnvironmentFault):
    """The child ended without finishing or saying why: killed by a signal (the kernel's
    out-of-memory killer, a stray ``kill -9``), or it exited on its own."""


def available() -> bool:
    return sys.platform.startswith("linux") and hasattr(os, "fork")


class Forked:
    """``fn()`` running in a forked child. :meth:`wait` returns when it is done and raises
    what it raised (an OSError or an mhc error, rebuilt here); :meth:`stop` kills it. The
    child dies with this process (kill -9 included), and never touches the terminal: what
    it has to say comes back through a pipe."""

    def __init__(self, fn: Callable[[], None]):
        parent = os.getpid()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: run, report, leave without running this process's exit handlers
            code = 0
            try:
                os.close(r)
                die_with_parent(parent)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's handler is the command line's
                fn()
            except BaseException as e:  # noqa: BLE001 - everything goes back to the parent
                code = 1
                try:
                    os.write(w, pickle.dumps(_portable(e)))
                except BaseException:  # noqa: BLE001
                    pass
            finally:
                os._exit(code)
        os.close(w)
        self.pid, self._fd = pid, r

    def wait(self) -> None:
        chunks = []
        # interrupted here (Ctrl-C), the child is left to stop(), which kills it: reaping it
        # on the way out would wait for all its links first
        while chunk := os.read(self._fd, 65536):
            chunks.append(chunk)
        os.close(self._fd)
        _, status = os.waitpid(self.pid, 0)
        self.pid = 0
        if chunks:
            raise _rebuilt(pickle.loads(b"".join(chunks)))
        if status != 0:
            how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"status {os.WEXITSTATUS(status)}"
            raise Died(f"the process making the output's links ended unexpectedly ({how})")

    def stop(self) -> None:
        """Kill the child (if still running) and reap it: nothing writes after this returns."""
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(self.pid, 0)
            self.pid = 0
            os.close(self._fd)


def die_with_parent(parent: int | None = None) -> None:
    """In a child process: be killed when the parent dies (kill -9 included; Linux's
    PR_SET_PDEATHSIG, a no-op elsewhere). ``parent``: its pid before the fork, to leave at
    once if it died before the request was made."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def _portable(e: BaseException) -> tuple:
    if isinstance(e, OSError):
        return ("os", e.errno, e.strerror, e.filename, e.filename2)
    if isinstance(e, MhcError):
        return ("mhc", type(e).__name__, str(e))
    return ("other", f"{type(e).__name__}: {e}")


def _rebuilt(t: tuple) -> BaseException:
    if t[0] == "os":
        return OSError(t[1], t[2], t[3], None, t[4])
    if t[0] == "mhc":
        from . import errors

        cls = getattr(errors, t[1], MhcError)
        return cls(t[2]) if isinstance(cls, type) and issubclass(cls, MhcError) else MhcError(t[2])
    if t[0] == "other" and t[1].startswith("KeyboardInterrupt"):
        return KeyboardInterrupt()
    return RuntimeError(t[1])
