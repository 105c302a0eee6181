"""Making the links of a tree: one folder of links per cluster, made by a few threads.

``symlink`` releases the GIL and on most disks many metadata writes in flight finish
sooner than one at a time, so a few threads make links at once (see :class:`LinkWriter`).
"""
from __future__ import annotations

import errno
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import EnvironmentFault, MhcError
from .names import cluster_folder
from .sweep import Partition

LINK_THREADS = 8


@dataclass(frozen=True)
class LinkSettings:
    mode: str = "symlink"  # symlink, hardlink, copy
    relative: bool = False
    unclustered: bool = True  # False: unclustered_U folders left empty
    changed_only: bool = False

    def tag(self) -> bytes:
        return f"{self.mode}|{self.relative}|{self.unclustered}".encode()


# How a filesystem says it holds no links: FAT and exFAT (ENOSYS through FUSE), some
# network shares, Windows' drives under WSL
_NO_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS)


def no_links(e: OSError, folder: str, link: str = "symlink") -> MhcError | None:
    """The one line for a folder whose filesystem refuses links of kind ``link`` (symlink,
    hardlink), if that is what ``e`` (from making one there) says; else None."""
    if e.errno not in _NO_LINKS:
        return None
    if link == "hardlink":
        return MhcError(f"cannot create hard links in {folder} ({e.strerror}): its filesystem does not hold them; "
                        f"use --link copy")
    return MhcError(f"cannot create symlinks in {folder} ({e.strerror}): its filesystem does not hold them; "
                    f"use --link copy, or --link hardlink where it holds hard links and the input is on it")


def make_link(target: str, link: str, mode: str, relative: bool) -> None:
    if mode == "symlink":
        src = os.path.relpath(target, os.path.dirname(link)) if relative else target
        try:
            os.symlink(src, link)
        except OSError as e:
            refusal = None if os.path.lexists(link) else no_links(e, os.path.dirname(link))
            if refusal is not None:
                raise refusal from None
            raise
    elif mode == "hardlink":
        try:
            os.link(target, link)
        except OSError as e:
            _gone(e, target, "link")
            if e.errno == errno.EXDEV:
                raise MhcError(f"cannot hard-link across filesystems ({target} -> {link}); use --link copy or put "
                               f"--output on the same filesystem") from None
            if e.errno in _NO_LINKS and not os.path.lexists(link):  # (the filesystem was checked before hashing)
                raise MhcError(f"cannot hard-link {target} ({e.strerror}): Linux refuses a hard link to another "
                               f"user's file (fs.protected_hardlinks), and some filesystems hold none; use "
                               f"--link copy") from None
            raise
    else:
        try:
            shutil.copy2(target, link)
        except OSError as e:
            _gone(e, target, "copy")
            raise


def _gone(e: OSError, target: str, made: str) -> None:
    """An original deleted or moved since it was hashed: said as such (it read "cannot write
    the output (ORIGINAL)", naming the input as if it were the output)."""
    if e.errno == errno.ENOENT and not os.path.lexists(target):
        raise EnvironmentFault(f"{target} was deleted or moved during the run, before its {made} was made; run again "
                               f"(the previous output is unchanged)") from None


class LinkWriter:
    """Creates links with a few threads. Use as a context manager: on leaving normally it
    waits for every link and raises the first failure; on an exception (Ctrl-C) it stops
    the threads at their next link, so nothing writes into a folder being removed."""

    STEP = 512  # links per task: fewer, larger tasks (a task per small folder spent more
    # time handing work between threads than making links: 120 files, 14,000 links, 1.2 s)

    def __init__(self, settings: LinkSettings, threads: int = LINK_THREADS):
        self.settings = settings
        self.pool = ThreadPoolExecutor(threads) if threads > 1 else None
        self.futures = []
        self.stopped = False
        self._batch: list[tuple[str | None, list[str], list[str]]] = []  # (folder, targets, links)
        self._held = 0

    def __enter__(self) -> "LinkWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self._submit()
                self._drain()
            except BaseException:
                self._stop()
                raise
            self._stop()
        else:
            self._stop()

    def add(self, targets: list[str], links: list[str], folder: str | None = None) -> None:
        """Make ``links`` to ``targets``; ``folder``: create it first (the folder they go in).
        Small folders are batched into one task (each task makes its folders before their
        links); a large one is made here and its links split into tasks."""
        step = self.STEP
        if self.pool is None or len(targets) > step:
            if folder is not None:
                os.mkdir(folder)  # in this thread: the chunks below may run in any order
            if self.pool is None:
                self._make([(None, targets, links)])
                return
            for s in range(0, len(targets), step):
                self.futures.append(self.pool.submit(self._make, [(None, targets[s:s + step], links[s:s + step])]))
        else:
            self._batch.append((folder, targets, links))
            self._held += len(targets) + 1
            if self._held >= step:
                self._submit()
        if len(self.futures) > 256:  # bounded: collect what finished
            self._drain(len(self.futures) // 2)

    def _submit(self) -> None:
        if self._batch:
            self.futures.append(self.pool.submit(self._make, self._batch))
            self._batch, self._held = [], 0

    def _make(self, jobs: list[tuple[str | None, list[str], list[str]]]) -> None:
        m, rel = self.settings.mode, self.settings.relative
        for folder, targets, links in jobs:
            if self.stopped:
                return
            if folder is not None:
                os.mkdir(folder)
            for t, link in zip(targets, links):
                if self.stopped:
                    return
                make_link(t, link, m, rel)

    def _drain(self, keep: int = 0) -> None:
        while len(self.futures) > keep:
            self.futures.pop(0).result()

    def _stop(self) -> None:
        self.stopped = True
        if self.pool is None:
            return
        while True:  # a second Ctrl-C must not leave threads writing behind us
            try:
                self.pool.shutdown(wait=True, cancel_futures=True)
                return
            except KeyboardInterrupt:
                continue


def layout(p: Partition, unclustered: bool = True) -> list[tuple[str, np.ndarray]]:
    """A threshold folder's subfolders and the files linked in each: ``RANK_SIZE`` per
    cluster, then ``unclustered_U`` (left empty without ``unclustered``)."""
    width = max(3, len(str(len(p.clusters))))
    groups = [(cluster_folder(r, len(c), width), c) for r, c in enumerate(p.clusters, 1)]
    groups.append((f"unclustered_{len(p.unclustered)}", p.unclustered if unclustered else p.unclustered[:0]))
    return groups


def write_partition(folder: Path, p: Partition, files: list[str], links: list[str], writer: LinkWriter) -> None:
    """One threshold folder, as :func:`layout` lays it out."""
    folder.mkdir()
    for name, members in layout(p, writer.settings.unclustered):
        ds = os.path.join(folder, name)
        idx = members.tolist()
        writer.add([files[i] for i in idx], [os.path.join(ds, links[i]) for i in idx], ds)
