"""The commit's critical section (see :mod:`mhc.output`): the changes it makes before
the swap, each undoable; the swap itself; the signals held back meanwhile.

A change is ``[kind, a, b]``: ``mv`` a -> b, ``mkdir`` a, ``rmdir`` a, ``ln`` (symbolic
link b holding a), ``rm`` (the symbolic link b, holding a). The journal file is a
12-digit count of the changes begun, rewritten in place before each, then the JSON list:
after a kill, exactly the changes begun are undone (the last only if it was made). The
count is also set as the journal's times before each change (:func:`mark_progress`), which
survive a power cut in step with the renames.
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
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


def mark_progress(fd: int, started: int) -> None:
    """Record in the journal's own times (``fd``, open) that ``started`` changes have begun.
    The count at the journal's head is rewritten in place, which a power cut may find older
    than the renames made after it: a file's data reaches the disk on the kernel's schedule,
    while its times, like the renames, are metadata, which ext4, XFS and btrfs journal in
    order. So the times are never behind the changes on the disk, and the undo after a power
    cut misses none (it would otherwise leave moved folders in the staging tree it removes).
    In whole seconds after 1970 (NTFS and HFS+ keep no finer times)."""
    os.utime(fd, (started, started))


_REAL_TIME = 10**8  # s: a journal's time before this (early 1973) is a count, not a time


def read_journal(path: Path, staging: Path | None = None, out: Path | None = None) -> list[list[str]]:
    """The changes a commit made or may have made (the last one perhaps not): as many as the
    count at its head or in its times (:func:`mark_progress`) says, whichever is more."""
    text = path.read_text()
    if text.startswith("{"):  # written by mhc before 2026-12: moves only, all undoable by their paths
        return [["mv", str(out / r), str(staging / r)] for r in json.loads(text).get("moves", [])]
    started, _, body = text.partition("\n")
    marked = int(path.stat().st_mtime)
    return json.loads(body)["ops"][:max(int(started), marked if marked < _REAL_TIME else 0)]


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


_RENAME_EXCHANGE = 2
_HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def signals_held(held: list[int]) -> Iterator[None]:
    """Hold back Ctrl-C, SIGTERM and SIGHUP for a critical section: ``held`` gets the
    signals that came, for the caller to raise again when it is safe (after the section:
    until then the handlers are the ones that record).

    Not pthread_sigmask: it blocks the calling thread only, and the kernel hands a signal
    to any thread that does not block it (OpenBLAS's, FFmpeg's), whose C handler then has
    Python raise KeyboardInterrupt in the main thread mid-section. A Python handler runs
    in the main thread whichever thread took the signal, so recording it there holds.
    Python runs no handler in other threads: a section there cannot be interrupted."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for sig in _HELD:
        handler = signal.getsignal(sig)
        if handler not in (signal.SIG_IGN, None):  # ignored (nohup) stays ignored
            previous[sig] = signal.signal(sig, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2). False where unsupported."""
    try:
        # the process's own symbols (libc's among them): ctypes.util.find_library would
        # run ldconfig in a subprocess, in the commit's critical section
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    rc = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def flush_to_disk(fd: int) -> None:
    """Write to the disk everything written so far on the filesystem of the open folder
    ``fd`` (Linux ``syncfs``; ``sync`` elsewhere). Before the commit: otherwise a power cut in
    the half minute the kernel may hold written data back can leave the swapped-in tree with
    empty files (ext4, XFS: the renames reach the disk before the files' data), among them
    summary.json, after which mhc refuses the output. One call for the whole tree: an fsync
    per file would cost a disk flush each. Raises OSError when the disk failed a write since
    ``fd`` was opened (EIO: Linux reports what the kernel's own write-back met too), which the
    tree must then not replace the old one with."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        os.sync()
        return
    if fn(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
