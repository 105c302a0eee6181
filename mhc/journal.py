"""The changes a commit makes before the swap, each undoable (see :mod:`mhc.output`).

A change is ``[kind, a, b]``: ``mv`` a -> b, ``mkdir`` a, ``rmdir`` a, ``ln`` (symbolic
link b holding a), ``rm`` (the symbolic link b, holding a). The journal file is a
12-digit count of the changes begun, rewritten in place before each, then the JSON list:
after a kill, exactly the changes begun are undone (the last only if it was made).
"""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path


def do_change(op: list[str], staging: Path) -> None:
    kind, a, b = op
    if kind == "mv":
        if b.startswith(str(staging) + os.sep):
            os.makedirs(os.path.dirname(b), exist_ok=True)
        os.rename(a, b)
    elif kind == "mkdir":
        os.mkdir(a)
    elif kind == "rmdir":
        os.rmdir(a)
    elif kind == "ln":
        os.symlink(a, b)
    elif kind == "rm":
        if os.readlink(b) != a:  # checked when planned; never remove what mhc did not make
            raise OSError(errno.EEXIST, "changed since it was checked", b)
        os.unlink(b)
    else:
        raise ValueError(kind)


def read_journal(path: Path, staging: Path | None = None, out: Path | None = None) -> list[list[str]]:
    """The changes a commit made or may have made (the last one perhaps not)."""
    text = path.read_text()
    if text.startswith("{"):  # written by mhc before 2026-12: moves only, all undoable by their paths
        return [["mv", str(out / r), str(staging / r)] for r in json.loads(text).get("moves", [])]
    started, _, body = text.partition("\n")
    return json.loads(body)["ops"][:int(started)]


def undo_changes(ops: list[list[str]]) -> None:
    """Undo ``ops``, the changes an interrupted or failed commit made, last first. Every
    change but the last was made; the undo of each checks its change is there, so the
    last one is undone only if it was made."""
    for kind, a, b in reversed(ops):
        if kind == "mv":
            if os.path.lexists(b) and not os.path.lexists(a):
                os.rename(b, a)
        elif kind == "mkdir":
            try:
                os.rmdir(a)
            except (FileNotFoundError, OSError):
                pass  # not made, or not empty: then it was there before
        elif kind == "rmdir":
            os.makedirs(a, exist_ok=True)
        elif kind == "ln":
            if os.path.islink(b) and os.readlink(b) == a:
                os.unlink(b)
        elif kind == "rm":
            if not os.path.lexists(b) and os.path.isdir(os.path.dirname(b)):
                os.symlink(a, b)
