"""Exceptions, exit statuses and error records shared by every stage.

Exit statuses of ``mhc`` (also in the README):

====  =====================================================================
0     done
1     done, but part of the work failed (files a disk failed with I/O errors, Hydrus
      batches not sent)
      or the reader of stdout closed it early (``mhc pairs | head``; click's convention)
2     a bad option, path or file given by the user; nothing was changed
3     the machine refused: disk full, read-only or unreadable folder, a lock held by
      another run, a service that cannot be reached, too many open files (ulimit -n),
      out of memory
130   interrupted (Ctrl-C); the previous output is unchanged
      (or, held back during the swap, the new one is complete: the line says which)
129   stopped by SIGHUP (the terminal or SSH session closed; not under ``nohup``); as 130
143   stopped by SIGTERM (``kill``, ``timeout``, a service manager); as 130
====  =====================================================================
"""
from __future__ import annotations

import errno
import os
import re
import resource
from dataclasses import dataclass
from pathlib import Path

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_ENVIRONMENT, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 3, 130, 143
EXIT_HANGUP = 129


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


def fault(e: OSError, what: str) -> MhcError:
    """An OSError while writing -> one line saying what happened and what to do."""
    if e.errno == errno.ENOSPC and any(_out_of_inodes(f) for f in (e.filename2, e.filename)):  # a link: filename2
        # space is left, but no room for one more file: "the disk is full" would send the
        # user to `df`, which shows free space (an output holds a link per file per threshold)
        return EnvironmentFault(f"{what}: the filesystem has no free inodes left (room for no more files, though "
                                f"space remains: see df -i); delete files there or choose another --output, and run "
                                f"again (the previous output is unchanged)")
    if e.errno == errno.ENOSPC or e.errno == errno.EDQUOT:
        return EnvironmentFault(f"{what}: the disk is full; free some space and run again (the previous output "
                                f"is unchanged)")
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return EnvironmentFault(f"{what}: {e.strerror}; choose an --output where you can write")
    if e.errno == errno.EIO:
        return EnvironmentFault(f"{what}: the disk or network share reports write errors ({e.strerror}; see dmesg): "
                                f"it is failing, or was unplugged or disconnected; choose another --output, or plug "
                                f"it in or connect it again, and run again (the previous output is unchanged)")
    if _not_answering(e):
        return EnvironmentFault(f"{what}: the disk stopped answering ({e.strerror}); check it (plug it in or mount it "
                                f"again) and run again (the previous output is unchanged)")
    if e.errno == errno.ENAMETOOLONG:
        return UsageError(f"{what}: a name is too long for this filesystem ({e.filename2 or e.filename}); choose "
                          f"an --output with a shorter path")
    # anything else (a folder that cannot hold folders, such as /proc; an I/O error): still
    # one line that says what to do
    return EnvironmentFault(f"{what}: {e.strerror or e}; choose another --output, or fix this one and run again "
                            f"(the previous output is unchanged)")


def resource_fault(e: BaseException) -> EnvironmentFault | None:
    """An exception that says the machine ran out of something a process needs (memory, a
    thread, file descriptors, processes), or that a disk stopped answering, wherever it came
    from (a pool's pipe, SQLite, the forked link maker, the output's pages), as one line saying
    what to do; None for any other exception."""
    if isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and "can't start new thread" in str(e)):
        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        where = "" if limit == resource.RLIM_INFINITY else f" (ulimit -v allows this process {limit >> 20} MB)"
        return EnvironmentFault(f"out of memory{where}; use fewer --workers (-j 1), free memory or raise the "
                                f"limit, and run again")
    if not isinstance(e, OSError):
        return None
    if e.errno == errno.EMFILE:
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        return EnvironmentFault(f"too many open files for one process (the limit is {limit}: ulimit -n); raise it "
                                f"(ulimit -n 4096) or use fewer --workers, and run again")
    if e.errno == errno.ENFILE:
        return EnvironmentFault("the system's table of open files is full; close programs or raise fs.file-max, "
                                "and run again")
    if e.errno in (errno.EAGAIN, errno.ENOMEM):  # fork refused: ulimit -u, or no memory for a new process
        return EnvironmentFault(f"cannot start a process ({e.strerror}); use fewer --workers (-j 1) or free "
                                f"memory, and run again")
    if _not_answering(e):
        where = os.fsdecode(e.filename) if e.filename else None
        mount = mount_point(where) if where else None
        at = f" mounted at {printable(mount)}" if mount else f" at {printable(where)}" if where else ""
        if e.errno == errno.EIO:  # the disk's own word: failing for good as often as unplugged
            return EnvironmentFault(f"the disk or network share{at} reports read errors ({e.strerror}; see dmesg): "
                                    f"it is failing, or was unplugged or disconnected; plug it in or connect it "
                                    f"again, or, if it is failing, copy what can still be read off it (ddrescue, or "
                                    f"a file copy) and work from the copy")
        return EnvironmentFault(f"the disk or network share{at} stopped answering ({e.strerror}); check it (plug "
                                f"it in or mount it again) and run again")
    return None


# What to do about an input disk that answers with I/O errors: "run again once it is back"
# would be wrong advice for a disk that is failing, the likelier cause when it is still plugged
# in. (resource_fault says it without "mhc", as the disk may hold the output or the cache.)
# ... and what a cache file its disk cannot read is said to be, after the system's words
CACHE_DISK_FAILING = "see dmesg: its disk is failing, or was unplugged or disconnected"
FAILING = ("it is failing, or was unplugged or disconnected; plug it in or connect it again, or copy what can "
           "still be read off it (ddrescue, or a file copy) and run mhc on the copy")


def disk_fault(reason: str) -> bool:
    """True for a file's failure reason (:class:`FileError`) that is its disk's fault: an I/O
    error, a FUSE driver or network share gone (``cannot read file (Input/output error)``),
    not the file's content or its permissions. Such a file is tried again on the next run."""
    return any(reason.endswith(f"({os.strerror(n)})") for n in _NOT_ANSWERING)


def _not_answering(e: OSError) -> bool:
    """A filesystem that no longer answers (a FUSE driver killed: ENOTCONN, and ECONNABORTED
    for the calls it was serving; a stale NFS handle; a disk gone or failing), whichever call
    meets it first, outside any file's own decoding."""
    return e.errno in _NOT_ANSWERING or (e.errno == errno.ECONNABORTED and e.filename is not None)


def mount_point(path: str) -> str | None:
    """The mount point (not /) that ``path`` lies under, from /proc/self/mounts: a mount that
    stopped answering cannot be found by stat-ing folders up from the path. (psutil, which
    lists mounts, comes only with Dask's extra; this is one read on Linux, None elsewhere.)"""
    try:
        with open("/proc/self/mounts", "rb") as f:
            fields = [line.split()[1] for line in f if len(line.split()) > 1]
        points = [os.fsdecode(re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8)]), p)) for p in fields]  # \040
    except OSError:
        return None
    path = os.path.abspath(path)
    inside = [m for m in points if m != "/" and (path == m or path.startswith(m.rstrip("/") + "/"))]
    return max(inside, key=len) if inside else None


_NOT_ANSWERING = frozenset({errno.EIO, errno.ENOTCONN, errno.ESTALE, errno.ENODEV, errno.ENXIO, errno.EREMOTEIO,
                            errno.EHOSTDOWN})


def _out_of_inodes(filename) -> bool:
    """True if the filesystem of ``filename`` (or its nearest existing folder) has space but
    no free inode."""
    if not filename:
        return False
    path = Path(os.fsdecode(filename))
    for folder in (path, *path.parents):
        try:
            st = os.statvfs(folder)
        except OSError:
            continue
        return st.f_files > 0 and st.f_favail == 0 and st.f_bavail > 0
    return False
