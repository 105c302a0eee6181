"""What the cache knows of a file besides its hashes: facts found while decoding it, and
a cheap digest of its content to confirm its identity."""
from __future__ import annotations

import functools
import hashlib
import os
import stat
from dataclasses import dataclass
from typing import BinaryIO


# Filesystems whose inode numbers are made up at each mount, in the order files are looked up
# (the FAT and exFAT drivers', and FUSE's by default: exfat-fuse, ntfs-3g, sshfs): after a
# remount another file of the same size and mtime (pictures of one size copied in one second)
# may have a file's inode number, so there the inode tells nothing about which file is which.
# By statfs(2)'s f_type (linux/magic.h): MSDOS_SUPER_MAGIC, EXFAT_SUPER_MAGIC, FUSE_SUPER_MAGIC.
_MADE_UP_INODES = {0x4D44, 0x2011BAB0, 0x65735546}


@functools.lru_cache(maxsize=1)
def _statfs():
    """libc's statfs(2), or None (not Linux): Python's os.statvfs has no filesystem type."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.statfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_char_p, ctypes.c_void_p)
    return fn


def inodes_made_up(path: str) -> bool:
    """Whether the filesystem holding ``path`` makes its inode numbers up at each mount (one
    statfs call: asked of every file, never remembered, since a device number is given to
    another filesystem once the first is unmounted). False where that cannot be told."""
    import ctypes

    fn = _statfs()
    if fn is None:
        return False
    buf = ctypes.create_string_buffer(256)  # struct statfs (120 bytes on x86-64): f_type comes first, a long
    if fn(os.fsencode(path), buf) != 0:
        return False
    return (ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF) in _MADE_UP_INODES


@dataclass(frozen=True)
class FileInfo:
    """Facts about a file, found while decoding it: for the report and ``summary.json``."""

    width: int | None = None
    height: int | None = None
    format: str | None = None  # JPEG, PNG, HEIF, ... or a video's container
    taken: str | None = None  # EXIF DateTimeOriginal as ISO 8601, if any
    sample: bytes | None = None  # digest of sampled blocks (cache identity)


def special_kind(mode: int) -> str:
    """What a file that is not a regular file is, by its ``st_mode``: "a FIFO", ..."""
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "a special file"


class NotRegularFile(OSError):
    """A path that discovery found as a regular file and that is now a FIFO, a device or a
    socket: its ``strerror`` is the file's failure reason, "not a regular file (a FIFO)"."""


def open_regular(path: str) -> BinaryIO:
    """``open(path, "rb")``, refusing (:class:`NotRegularFile`) what is no longer a regular
    file. Discovery skips FIFOs and devices, but a file replaced by one during a long run
    (hours, for a large collection) was opened as it was found: opening a FIFO waits for a
    writer and reading a device may never end, which hung the run for good where a file is
    hashed in the main process (no --file-timeout there). O_NONBLOCK makes the open return
    at once, and fstat says what was opened."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(None, f"not a regular file ({special_kind(mode)})", path)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def content_sample(path: str, size: int) -> bytes:
    """A digest of the first and last 64 KiB and eight 4 KiB blocks between: a cheap
    check that a file whose size and mtime stayed still holds the same bytes (files up to
    192 KiB are read whole). Raises :class:`NotRegularFile` for what is no longer a file."""
    h = hashlib.blake2b(digest_size=16)
    h.update(size.to_bytes(8, "little"))
    with open_regular(path) as f:
        if size <= 3 * 65536:
            h.update(f.read())
        else:
            h.update(f.read(65536))
            for k in range(1, 9):
                f.seek(size * k // 9)
                h.update(f.read(4096))
            f.seek(size - 65536)
            h.update(f.read(65536))
    return h.digest()


def twins(rows, new: dict[bytes, tuple[str, int, int]]) -> dict[bytes, tuple]:
    """Files at new paths that the cache knows under another path: moved or renamed (same
    inode, new path), or copied with their mtime (``cp -p``, ``rsync -a``). ``rows``: the
    cache's ``(path, size, mtime, sample, *facts)``; ``new``: path -> (its name as text,
    size, mtime as stored). A row is a twin when size and mtime agree and the file's sampled
    digest (:func:`content_sample`) equals the row's; returns new path -> that row. The
    digest is read only for files that have a candidate, once each."""
    wanted: dict[tuple[int, int], list[bytes]] = {}
    for p, (_, size, mtime) in new.items():
        wanted.setdefault((size, mtime), []).append(p)
    found: dict[bytes, tuple] = {}
    digests: dict[bytes, bytes | None] = {}
    for row in rows:
        path, size, mtime, sample = row[:4]
        for p in wanted.get((size, mtime), ()):
            if p in found or sample is None:
                continue
            if p not in digests:
                try:
                    digests[p] = content_sample(new[p][0], size)
                except OSError:
                    digests[p] = None
            if digests[p] == sample:
                found[p] = row
    return found


def original_key(width: int | None, height: int | None, size: int | None, taken: str | None, mtime_ns: int | None,
                 path: str) -> tuple:
    """Sort key of "probably the original" (smallest first): the largest picture, then the
    least compressed (most bytes per pixel), then the oldest (EXIF date taken, else mtime),
    then the path. As czkawka and dupeGuru choose the file to keep."""
    import time

    px = (width or 0) * (height or 0)
    bpp = (size or 0) / px if px else 0.0
    when = taken or (time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(mtime_ns / 1e9)) if mtime_ns else "9999")
    return (-px, -bpp, when, path)
