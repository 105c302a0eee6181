"""The two marks that say what of the report's thumbnails mhc made and what is on the disk.

Every thumbnail holds :data:`THUMB_MARK`: only such files are ever removed. A folder holds
``.making`` from the first thumbnail a run writes into it until the run's commit wrote them to
the disk: left from an earlier boot of the machine, it says the power went (or the system
stopped) before that, when the thumbnails made then could be empty or cut short.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from .ownership import _THUMB, MAKING

log = logging.getLogger(__name__)

THUMB_DIR = Path(".mhc") / "thumbs"
# Written into every thumbnail (a JPEG comment): what proves a file in .mhc/thumbs is one mhc
# made, before it is removed (mhc never deletes a file it did not create)
THUMB_MARK = b"mhc report thumbnail"


def is_ours(path: Path) -> bool:
    """A thumbnail mhc made: a JPEG that holds :data:`THUMB_MARK` (the comment follows the
    JPEG's first segment)."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return False
    return head.startswith(b"\xff\xd8") and THUMB_MARK in head


# Thumbnails are written without an fsync each (a disk flush per file): the run's commit
# writes them out with its tree (mhc.output's flush). Until then a power cut can leave them
# empty or cut short on the disk, and they would be reused by name for good. The mark says
# which folders hold thumbnails that may not be on the disk yet, and from which boot.

def _boot() -> str:
    """This boot of the machine (Linux); '' elsewhere, where every mark left is checked."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def mark_making(tdir: str) -> None:
    """Before a thumbnail is written into ``tdir`` (in any process): the mark, once. Its
    name reaches the disk before any thumbnail's (the folder is synced; journalling
    filesystems keep names in order anyway)."""
    mark = os.path.join(tdir, MAKING)
    if os.path.exists(mark):
        return
    try:
        fd = os.open(mark, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return  # another worker's
    try:
        os.write(fd, f"{_boot()}\n".encode())
    finally:
        os.close(fd)
    fd = os.open(tdir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def thumbs_written(tdir: Path, *, flush: bool = False) -> None:
    """The thumbnails in ``tdir`` are on the disk (after the commit's flush; ``flush``:
    write them out here): the mark goes."""
    from .journal import flush_to_disk

    mark = tdir / MAKING
    if not mark.exists():
        return
    check_left_thumbs(tdir)  # one of an earlier boot (left for a run that did not look: --no-report) first
    if not mark.exists():
        return
    try:
        if flush:
            fd = os.open(tdir, os.O_RDONLY)
            try:
                flush_to_disk(fd)
            finally:
                os.close(fd)
        mark.unlink()
    except OSError:
        pass  # the mark stays: the thumbnails are checked after the next restart


def check_left_thumbs(tdir: Path) -> int:
    """Before the thumbnails in ``tdir`` are used: when a run of an earlier boot of the
    machine left the mark (the power went, or the system stopped, before its commit),
    remove those it may have left empty or cut short; they are made again. Returns how many."""
    mark = tdir / MAKING
    try:
        left = mark.read_text(errors="replace").strip()
    except FileNotFoundError:
        return 0
    except OSError:
        left = ""
    if left and left == _boot():
        return 0  # a run of this boot: what is not on the disk yet the kernel still holds
    removed = 0
    try:
        since = os.stat(mark).st_ctime - CLOCK_SLACK
        entries = list(os.scandir(tdir))
    except OSError:
        return 0
    for e in entries:
        if _THUMB.match(e.name) and e.is_file(follow_symlinks=False) and _changed_since(e, since) and broken(e.path):
            try:
                os.unlink(e.path)
                removed += 1
            except OSError:
                return removed  # (a read-only output: the mark stays)
    try:
        mark.unlink()
    except OSError:
        pass
    if removed:
        log.warning("%d thumbnails in %s were left empty or cut short when the machine stopped during an earlier "
                    "run; they are made again", removed, tdir)
    return removed


# Only thumbnails made (or linked, renamed) since the mark can be damaged: the earlier ones were
# written out by an earlier commit. Their inodes are read, not their data: after a restart,
# with nothing cached, opening each of 100,000 thumbnails took 24 s
CLOCK_SLACK = 300.0  # seconds (coarse timestamps, a clock set back a little during the run)


def _changed_since(e: os.DirEntry, since: float) -> bool:
    try:
        st = e.stat(follow_symlinks=False)
    except OSError:
        return False
    return max(st.st_ctime, st.st_mtime) >= since


def broken(path: str) -> bool:
    """A thumbnail a power cut left damaged, which mhc may remove: empty, all zero bytes, or
    one of mhc's (:data:`THUMB_MARK`) without the end of its JPEG."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
            if not head.strip(b"\0"):
                return True  # (no data: nothing of anyone's is lost)
            if not (head.startswith(b"\xff\xd8") and THUMB_MARK in head):
                return False
            f.seek(-2, os.SEEK_END)
            return f.read(2) != b"\xff\xd9"
    except OSError:
        return False
