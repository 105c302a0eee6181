"""Exceptions and error records shared by every stage."""
from __future__ import annotations

from dataclasses import dataclass


class MhcError(Exception):
    """A problem the user can fix (bad option, unusable folder).

    The CLI prints the message without a traceback; the message says how to fix it.
    """


class UsageError(MhcError):
    """An option or argument is invalid."""


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
