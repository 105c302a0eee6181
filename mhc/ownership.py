"""What mhc owns in an output folder, and removing only that.

mhc owns the entries it makes: the top-level files it names, ``report/`` pages, ``.mhc/``
thumbnails, and algorithm folders of threshold folders of cluster folders of links.
Anything else is the user's: refused before a run replaces it, kept when an old tree is
removed.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .discover import MARKER
from .errors import UsageError

log = logging.getLogger(__name__)

TOP_LEVEL_FILES = frozenset({MARKER, "summary.json", "errors.csv", "index.html"})
TOP_LEVEL_DIRS = frozenset({".mhc", "report"})
JOURNAL = ".mhc-moves.json"


THRESHOLD_FOLDER = re.compile(r"^(thr_\d{3,}_unclustered_\d+|hdbscan_min\d+)$")
CLUSTER_FOLDER = re.compile(r"^(\d{3,}_\d+|unclustered_\d+)$")
_PAGE = re.compile(r"^thr_\d{3,}(-\d+)?\.html$")
_THUMB = re.compile(r"^[0-9a-f]{20}\.jpg(\.tmp)?$")
MAKING = ".making"  # in .mhc/thumbs while thumbnails may not be on the disk yet (see mhc.thumbmarks.mark_making)
_FOREST = re.compile(r"^[\w.-]+\.npz(\.tmp)?$")


def owned(parts: tuple[str, ...], is_dir: bool) -> bool:
    """Whether an entry at ``parts`` (relative to the output folder) has the shape of
    something mhc makes. Algorithm folders' links are checked by name elsewhere."""
    top, depth = parts[0], len(parts)
    if depth == 1:
        return (top in TOP_LEVEL_FILES and not is_dir) or (top in TOP_LEVEL_DIRS and is_dir) or top == JOURNAL \
            or (is_dir and not top.startswith("."))
    if top == "report":
        return is_dir if depth == 2 else depth == 3 and not is_dir and bool(_PAGE.match(parts[2]))
    if top == ".mhc":
        if depth == 2:
            return is_dir and parts[1] in ("thumbs", "forests")
        pattern = _THUMB if parts[1] == "thumbs" else _FOREST
        return depth == 3 and not is_dir and (bool(pattern.match(parts[2])) or parts[1:] == ("thumbs", MAKING))
    if depth == 2:
        return is_dir and bool(THRESHOLD_FOLDER.match(parts[1]))
    if depth == 3:
        return is_dir and bool(CLUSTER_FOLDER.match(parts[2]))
    return depth == 4 and not is_dir  # a link (or a copy) in a cluster folder


def check_own_dir(d: Path, name: str, found: list[str] | None = None) -> None:
    """Refuse if anything under ``d`` (``report/`` or ``.mhc/``) is not of mhc's shape
    (``found``: collect instead, see :func:`refuse`). scandir's entry types come with the
    listing: no stat per file (100,000 thumbnails are checked in a fraction of a second;
    os.walk with a path per entry took 8 s)."""
    stack = [(str(d), (name,))]
    while stack:
        folder, parts = stack.pop()
        with os.scandir(folder) as it:
            for e in it:
                is_dir = e.is_dir(follow_symlinks=False)
                sub = (*parts, e.name)
                if e.is_symlink() or not owned(sub, is_dir):
                    refuse(e.path, found)
                elif is_dir:
                    stack.append((e.path, sub))


def check_links(folder: str, link_names: set[str], files_mode: bool = False, found: list[str] | None = None,
                as_made: Callable[[os.DirEntry], bool] | None = None, changed: list[str] | None = None) -> None:
    """Refuse if a cluster folder holds anything but links named as mhc names them (with
    ``files_mode``, copies or hard links: regular files, each ``as_made`` (see
    :func:`copies_as_made`), else noted in ``changed``; ``found``: see :func:`refuse`)."""
    for e in os.scandir(folder):
        if not (e.name in link_names and (e.is_symlink() or (files_mode and e.is_file(follow_symlinks=False)))):
            refuse(e.path, found)
        elif as_made is not None and not e.is_symlink() and not as_made(e):
            if changed is None:
                raise NotMade([], [e.path])
            changed.append(e.path)


def not_ours(root: Path) -> Callable[[str], bool]:
    """For removing an old tree: entries that do not have mhc's shape stay (something a
    user put there after the checks ran)."""
    def keep(path: str) -> bool:
        parts = Path(path).relative_to(root).parts
        is_dir = os.path.isdir(path) and not os.path.islink(path)
        return not owned(parts, is_dir)
    return keep


class NotMade(UsageError):
    """Entries of the output that mhc did not make, where mhc would replace them; ``changed``:
    files of a tree of copies or hard links that mhc made and someone changed since."""

    def __init__(self, paths: list[str], changed: list[str] | None = None):
        from .errors import printable

        self.paths, self.changed = paths, changed or []
        edited = ""
        if self.changed:
            shown = ", ".join(printable(p) for p in self.changed[:3])
            edited = (f"{shown}, a file mhc made that was changed since" if len(self.changed) == 1 else
                      f"{len(self.changed)} files mhc made that were changed since, e.g. {shown}")
        if not paths:
            it, its = ("it", "its folder") if len(self.changed) == 1 else ("them", "their folders")
            super().__init__(f"the output folder holds {edited} (edited in a viewer?); mhc would delete {it} with "
                             f"{its}: move {it} out of the output folder, then run again")
            return
        if len(paths) == 1:
            what = f"{printable(paths[0])}, which mhc did not make; move it"
        else:  # all of them at once: a viewer's Thumbs.db in 50 folders must not take 50 runs to find
            shown = ", ".join(printable(p) for p in paths[:3])
            what = f"{len(paths)} entries mhc did not make where it replaces things, e.g. {shown}; move them"
        also = f", and also {edited}" if edited else ""
        super().__init__(f"the output folder holds {what} out of the output folder{also} (mhc only replaces what it "
                         f"made), then run again")


def refuse(path: str, found: list[str] | None = None) -> None:
    """Refuse ``path``, something mhc did not make; with ``found``, note it there and go on
    (the caller raises :class:`NotMade` for all of them once every check has run)."""
    if found is None:
        raise NotMade([path])
    found.append(path)


# FAT keeps a file's times to 2 s: a copy's mtime may read up to that far from its original's
MTIME_SLACK_NS = 2_000_000_000


def copies_as_made(files: list[str], names: list[str], sizes: list[int], mtimes: list[int], written: int = 0,
                   sets_own_times: Callable[[], bool] | None = None) -> Callable[[os.DirEntry], bool]:
    """For a tree of copies or hard links whose run recorded ``files``, their link ``names``
    and the files' ``sizes`` and ``mtimes`` (ns): whether an entry is as mhc made it, so that
    replacing its folder loses nothing. mhc's copies keep their original's mtime
    (``shutil.copy2``) and its hard links are the original, so they never have a later mtime
    than the original had when the run saw it (an older version's, for a copy kept while the
    original changed). A copy edited in place, or a file saved over one (an image viewer's
    rotate and save), has the time of that edit: unless it is the original itself, or a copy
    of it as it is now (the original changed during the run), it is the user's. On a
    filesystem that sets its own times (``sets_own_times``, asked once and only where the
    answer decides: see :func:`keeps_times`), a mtime later than ``written``, when the output
    was last written (ns), is the user's instead."""
    at = {n: i for i, n in enumerate(names)} if len(names) == len(files) == len(sizes) == len(mtimes) else {}
    sets_own = functools.cache(sets_own_times) if sets_own_times is not None else None  # asked once

    def as_made(e: os.DirEntry) -> bool:
        i = at.get(e.name)
        if i is None:
            return True  # (not named as mhc names them: check_links refuses it anyway)
        try:
            st = e.stat(follow_symlinks=False)
        except OSError:
            return True  # gone: nothing to lose
        by_original = st.st_mtime_ns <= mtimes[i] + MTIME_SLACK_NS
        by_run = st.st_mtime_ns <= written + MTIME_SLACK_NS
        kept = by_original
        if by_original != by_run and sets_own is not None and sets_own():
            kept = by_run  # (where the two disagree, a filesystem that sets its own times: the run's)
        if kept:
            return True
        try:
            now = os.stat(files[i])
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == (now.st_dev, now.st_ino) or (
            st.st_size == now.st_size and abs(st.st_mtime_ns - now.st_mtime_ns) <= MTIME_SLACK_NS)
    return as_made


def keeps_times(folder: Path) -> bool:
    """Whether ``folder``'s filesystem keeps the modification time set on a file, as
    ``shutil.copy2`` sets a copy's to its original's. Most do; some FUSE ones (a phone over
    MTP, some cloud drives) set their own, where every copy would look edited. Tried on a
    file of mhc's own, made and removed at once; True where it cannot tell."""
    probe = folder / f".mhc-times-probe-{os.getpid()}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except OSError:
        return True
    try:
        os.utime(probe, ns=(10**18, 10**18))  # (2001-09-09)
        return abs(os.stat(probe).st_mtime_ns - 10**18) <= MTIME_SLACK_NS
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(probe)


def remove_tree(path: Path, keep: Callable[[str], bool] = lambda p: False) -> list[str]:
    """Delete a tree mhc made, bottom-up, never following a symlink; entries for which
    ``keep(path)`` is true are left in place (with their folders). Returns what was left."""
    left: list[str] = []

    def rm(d: str) -> bool:
        # FileNotFoundError is tolerated throughout: a detached remover of an earlier run
        # (see retire) may be deleting the same tree at the same moment.
        empty = True
        try:
            with os.scandir(d) as it:
                entries = list(it)
        except FileNotFoundError:
            return True
        for e in entries:
            if keep(e.path):
                left.append(e.path)
                empty = False
            elif e.is_dir(follow_symlinks=False):
                empty = rm(e.path) and empty
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(e.path)  # a link is removed, never its target
        if empty:
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(d)
        return empty

    if os.path.lexists(path):
        rm(str(path))
    return left


def being_removed(path: Path) -> bool:
    """True while a detached remover (see retire) holds its lock on ``path``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops a lock we took


def retire(path: Path, background: bool = True) -> None:
    """Remove an old tree (the whole of it is mhc's: checked before it was swapped out).
    In the background by default: a detached process, so the run ends at once; if it is
    killed, the next run finishes the job."""
    if background:
        try:
            subprocess.Popen([sys.executable, "-m", "mhc.ownership", str(path)], start_new_session=True,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             close_fds=True)
            return
        except OSError:
            pass
    try:
        left = remove_tree(path, not_ours(path))
    except OSError as e:
        log.warning("could not remove the previous output %s (%s); the next run retries", path, e.strerror)
        return
    if left:
        log.warning("kept %d entries mhc did not make in %s, e.g. %s", len(left), path, left[0])


if __name__ == "__main__":  # the detached remover of an old tree (see retire)
    try:
        # The lock tells a later run's recovery that this tree is being removed, so it does
        # not wait for (or race with) this process; it is released when the process ends.
        lock = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(lock, fcntl.LOCK_EX)
        remove_tree(Path(sys.argv[1]), not_ours(Path(sys.argv[1])))
    except OSError:
        pass  # the next run's recovery finishes it
