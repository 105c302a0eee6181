"""The output tree: staged, then swapped in whole, so readers never see a mix.

Layout (compatible with peterlevi/image-clustering)::

    <out>/.mhc-output  summary.json  errors.csv
    <out>/<algo>_<size>/thr_NNN_unclustered_U/RANK_SIZE/<stem>_<hexhash><ext> -> original
    <out>/<algo>_<size>/thr_NNN_unclustered_U/unclustered_U/...

A run builds the whole new tree in a hidden sibling folder, then exchanges it with the
old one in a single ``renameat2(RENAME_EXCHANGE)`` (or two renames, recovered on the
next run), then removes the old tree, deleting only what mhc made.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from .discover import MARKER, STAGING_INFIX
from .errors import MhcError

log = logging.getLogger(__name__)

TOP_LEVEL_FILES = frozenset({MARKER, "summary.json", "errors.csv", "index.html"})
TOP_LEVEL_DIRS = frozenset({".mhc", "report"})  # thumbnails, report pages
LINK_MODES = ("symlink", "hardlink", "copy")
_NAME_MAX = 255


# -- names --------------------------------------------------------------------
def threshold_folder(threshold: int, unclustered: int, width: int = 3) -> str:
    return f"thr_{threshold:0{width}d}_unclustered_{unclustered}"


def cluster_folder(rank: int, size: int, width: int = 3) -> str:
    return f"{rank:0{width}d}_{size}"


def _clean(text: str) -> str:
    # no separators, no control characters (newlines break viewers and scripts)
    return "".join("_" if c in "/\\\0" or ord(c) < 32 or ord(c) == 127 else c for c in text)


def link_name(path: str, hexhash: str, suffix: str = "") -> str:
    """``<stem>_<hexhash>[suffix]<ext>`` for a file; at most 255 bytes; no separators."""
    base = os.path.basename(path)
    stem, ext = os.path.splitext(base)
    stem, ext = _clean(stem), _clean(ext)
    if len(os.fsencode(ext)) > 16:
        stem, ext = stem + ext, ""
    tail = f"_{hexhash}{suffix}{ext}"
    budget = _NAME_MAX - len(os.fsencode(tail))
    while len(os.fsencode(stem)) > budget:
        stem = stem[:-1]
    return stem + tail


def unique_link_names(paths: list[str], hexes: list[str]) -> list[str]:
    """Link names for files, unique among themselves (case-insensitively, so the tree
    also copies to case-insensitive filesystems). Deterministic for the same input order.

    Thousands of identical files with the same name are numbered ``_2``, ``_3``, ... in
    linear time (the next free number per name is remembered)."""
    names: list[str] = []
    taken: set[str] = set()
    next_k: dict[str, int] = {}
    for path, hx in zip(paths, hexes):
        name = link_name(path, hx)
        base = name.casefold()
        if base in taken:
            k = next_k.get(base, 1)
            while name.casefold() in taken:
                k += 1
                name = link_name(path, hx, f"_{k}")
            next_k[base] = k
        taken.add(name.casefold())
        names.append(name)
    return names


# -- links --------------------------------------------------------------------
def make_link(target: str, link: str, mode: str, relative: bool) -> None:
    if mode == "symlink":
        src = os.path.relpath(target, os.path.dirname(link)) if relative else target
        try:
            os.symlink(src, link)
        except OSError as e:
            if e.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES) and not os.path.lexists(link):
                raise MhcError(
                    f"cannot create symlinks in {os.path.dirname(link)} ({e.strerror}); "
                    f"use --link hardlink (same filesystem) or --link copy"
                ) from None
            raise
    elif mode == "hardlink":
        try:
            os.link(target, link)
        except OSError as e:
            if e.errno == errno.EXDEV:
                raise MhcError(
                    f"cannot hard-link across filesystems ({target} -> {link}); "
                    f"use --link copy or put --output on the same filesystem"
                ) from None
            raise
    else:
        shutil.copy2(target, link)


# -- the output folder ----------------------------------------------------------
def _is_within(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_output(out: Path, inputs: list[Path]) -> None:
    """Refuse an output folder that would put the user's files at risk."""
    real = Path(os.path.realpath(out))
    for inp in inputs:
        rin = Path(os.path.realpath(inp))
        if real == rin:
            raise MhcError(f"--output {out} is the input folder; choose a separate folder such as data/output")
        if _is_within(rin, real):
            raise MhcError(f"--output {out} contains the input folder {inp}; choose a folder outside it")
    if real.exists() and not real.is_dir():
        raise MhcError(f"--output {out} exists and is not a folder; choose another path")
    if real.is_dir() and not (real / MARKER).exists():
        try:
            empty = next(real.iterdir(), None) is None
        except OSError as e:
            raise MhcError(f"cannot read --output {out} ({e.strerror})") from None
        if not empty:
            raise MhcError(
                f"--output {out} is not empty and was not made by mhc (no {MARKER} marker); "
                f"choose an empty or new folder"
            )


def foreign_entries(out: Path, algo_dirs: set[str], allow_files: bool = False) -> list[str]:
    """Paths inside a previous output that mhc did not create (they must not be deleted).

    mhc creates: the top-level files it names, its ``.mhc`` work folder, and algorithm
    folders of threshold folders of cluster folders of links (``allow_files``: the previous
    run wrote hard links or copies there instead of symlinks).
    """
    found: list[str] = []
    try:
        top = list(os.scandir(out))
    except FileNotFoundError:
        return found
    for e in top:
        if e.name in TOP_LEVEL_FILES and e.is_file(follow_symlinks=False):
            continue
        if e.name in TOP_LEVEL_DIRS and e.is_dir(follow_symlinks=False):
            continue
        if e.name in algo_dirs and e.is_dir(follow_symlinks=False):
            _foreign_below(e.path, 0, allow_files, found)
            continue
        found.append(e.path)
    return sorted(found)


def _foreign_below(path: str, depth: int, allow_files: bool, found: list[str]) -> None:
    # DirEntry answers is_symlink/is_dir from the directory listing: no stat per link
    with os.scandir(path) as it:
        for e in it:
            if e.is_symlink():
                if depth < 2:
                    found.append(e.path)
            elif e.is_dir(follow_symlinks=False) and depth < 2:
                _foreign_below(e.path, depth + 1, allow_files, found)
            elif not (allow_files and depth == 2 and e.is_file(follow_symlinks=False)):
                found.append(e.path)


def remove_tree(path: Path, keep: Callable[[str], bool] = lambda p: False) -> list[str]:
    """Delete a tree mhc made, bottom-up, never following a symlink; entries for which
    ``keep(path)`` is true are left in place (with their folders). Returns what was left."""
    left: list[str] = []

    def rm(d: str) -> bool:
        empty = True
        with os.scandir(d) as it:
            entries = list(it)
        for e in entries:
            if keep(e.path):
                left.append(e.path)
                empty = False
            elif e.is_dir(follow_symlinks=False):
                empty = rm(e.path) and empty
            else:
                os.unlink(e.path)  # a link is removed, never its target
        if empty:
            os.rmdir(d)
        return empty

    if os.path.lexists(path):
        rm(str(path))
    return left


_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2). False where unsupported."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    AT_FDCWD = -100
    rc = fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a))


class OutputFolder:
    """An mhc output folder: lock, staging, swap.

    Use as ``with OutputFolder(out, inputs) as of: build in of.staging; of.commit()``.
    """

    def __init__(self, out: str | Path, inputs: list[Path]):
        self.out = Path(os.path.realpath(out))
        self.inputs = inputs
        self.parent = self.out.parent
        self._lock_path = self.parent / f".{self.out.name}.mhc-lock"
        self._lock_fd: int | None = None
        self.staging = self.parent / f".{self.out.name}{STAGING_INFIX}{os.getpid()}"
        self._old = self.parent / f".{self.out.name}.mhc-old-{os.getpid()}"

    def __enter__(self) -> "OutputFolder":
        check_output(self.out, self.inputs)
        self.parent.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            self._recover()
            self._check_foreign()
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self.staging.exists():
                remove_tree(self.staging)
        finally:
            self._unlock()

    def stage(self) -> Path:
        """Create the (hidden, sibling) staging folder the new tree is built in."""
        self.staging.mkdir()
        (self.staging / MARKER).write_text("This folder was made by mhc; mhc may replace it.\n")
        return self.staging

    def replace_file(self, name: str, write: Callable[[Path], None]) -> None:
        """Atomically replace one top-level file of the current output (write, then rename)."""
        tmp = self.out / f".{name}.mhc-tmp"
        write(tmp)
        os.replace(tmp, self.out / name)

    def _lock(self) -> None:
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise MhcError(
                f"another mhc run (pid {other}) is writing {self.out}; wait for it to finish "
                f"or choose another --output"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _recover(self) -> None:
        """Under the lock: finish what a killed run left (staging and old trees)."""
        prefix = f".{self.out.name}"
        for p in sorted(self.parent.glob(f"{prefix}.mhc-old-*")):
            if not self.out.exists() and (p / MARKER).exists():
                os.rename(p, self.out)  # killed between the two renames: put the old tree back
                log.warning("restored the previous output from an interrupted run")
            elif (p / MARKER).exists():
                remove_tree(p)
        for p in self.parent.glob(f"{prefix}{STAGING_INFIX}*"):
            if (p / MARKER).exists() or not any(p.iterdir()):
                remove_tree(p)

    def previous_summary(self) -> dict | None:
        try:
            return json.loads((self.out / "summary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def carry_over(self, algo_dir: str) -> None:
        """Copy a previous run's algorithm folder into the staging tree (links recreated)."""
        src = self.out / algo_dir
        dst = self.staging / algo_dir
        for root, _dirs, files in os.walk(src):
            rel = os.path.relpath(root, src)
            target_dir = dst / rel if rel != "." else dst
            target_dir.mkdir(exist_ok=True)
            for f in files:
                s = os.path.join(root, f)
                if os.path.islink(s):
                    os.symlink(os.readlink(s), target_dir / f)
                else:
                    os.link(s, target_dir / f)

    def _check_foreign(self) -> None:
        prev = self.previous_summary() or {}
        self._allow_files = prev.get("options", {}).get("link", "symlink") != "symlink"
        self._algo_dirs = set(prev.get("algorithms", {}))
        foreign = foreign_entries(self.out, self._algo_dirs, self._allow_files)
        if foreign:
            raise MhcError(
                f"{self.out} holds files mhc did not create, e.g. {foreign[0]}; "
                f"move them out of the output folder, then run again"
            )

    def _not_ours(self, path: str) -> bool:
        """For removing the old tree: anything that appeared since the check stays."""
        rel = Path(path).relative_to(self._old_root)
        parts = rel.parts
        if len(parts) == 1:
            return not (parts[0] in TOP_LEVEL_FILES or parts[0] in TOP_LEVEL_DIRS or parts[0] in self._algo_dirs)
        if parts[0] in TOP_LEVEL_DIRS:
            return False
        if os.path.islink(path) or (len(parts) < 4 and os.path.isdir(path)):
            return len(parts) > 4
        return not (self._allow_files and len(parts) == 4)

    def commit(self) -> list[str]:
        """Swap the staged tree in; remove the old one. Returns paths that were left in place."""
        if self.out.exists():
            if _exchange(self.staging, self.out):
                self._old_root = self.staging
            else:
                os.rename(self.out, self._old)
                os.rename(self.staging, self.out)
                self._old_root = self._old
            return remove_tree(self._old_root, self._not_ours)
        os.rename(self.staging, self.out)
        return []
