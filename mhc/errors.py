"""Exceptions, exit statuses and error records shared by every stage.

Exit statuses of ``mhc`` (also in the README):

====  =====================================================================
0     done
1     done, but part of the work failed (e.g. Hydrus batches not sent)
2     a bad option, path or file given by the user; nothing was changed
3     the machine refused: disk full, read-only or unreadable folder, a lock held by
      another run, a service that cannot be reached
130   interrupted (Ctrl-C); the previous output is unchanged
143   stopped by SIGTERM (``kill``, ``timeout``, a service manager); as 130
====  =====================================================================
"""
from __future__ import annotations

from dataclasses import dataclass

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_ENVIRONMENT, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 3, 130, 143


class MhcError(Exception):
    """A problem the user can fix. The CLI prints the message (which says how) as one
    line, without a traceback, and exits with :attr:`exit_code`."""

    exit_code = EXIT_USAGE


class UsageError(MhcError):
    """An option, argument or path is invalid."""


class EnvironmentFault(MhcError):
    """The machine refused: disk full, read-only folder, permission, lock, unreachable service."""

    exit_code = EXIT_ENVIRONMENT


@dataclass(frozen=True)
class FileError:
    """A file that could not be used, and why. Errors are values: the run goes on."""

    path: str
    reason: str


def printable(path: str) -> str:
    """A path safe to print: bytes that are not UTF-8 (surrogate escapes) and control
    characters are shown as escapes instead of crashing or garbling the terminal."""
    text = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
