"""The output folder: staged, then swapped in whole, so readers never see a mix.

Layout (compatible with peterlevi/image-clustering)::

    <out>/.mhc-output  summary.json  errors.csv  index.html  report/  .mhc/
    <out>/<algo>_<size>/thr_NNN_unclustered_U/RANK_SIZE/<stem>_<hash16><ext> -> original

A run builds what changed in a hidden sibling folder; folders whose content is unchanged
are *moved* into it (a rename, however many links they hold), and folders that changed a
little are moved and patched (see :mod:`mhc.patching`), in a short critical section with
signals held back and a journal, so a killed run is rolled back by the next one. Then
the two trees are exchanged in one ``renameat2(RENAME_EXCHANGE)`` and the old one is
removed by a detached process (deleting only what mhc made, never following a link), so
nobody waits for 100,000 unlinks.

mhc owns only what it wrote: anything else found where mhc would delete is refused with
one line naming it, and the output is left as it was.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from .discover import MARKER, STAGING_INFIX
from .errors import EnvironmentFault, fault
from .journal import do_change, exchange, flush_to_disk, mark_progress, read_journal, signals_held, undo_changes
from .names import unique_link_names  # noqa: F401  (re-exported)
from .ownership import (
    CLUSTER_FOLDER,
    JOURNAL,
    THRESHOLD_FOLDER,
    TOP_LEVEL_DIRS,
    TOP_LEVEL_FILES,
    being_removed,
    check_links,
    check_own_dir,
    NotMade,
    not_ours,
    refuse,
    remove_tree,
    retire,
)
from .paths import check_output, inside

log = logging.getLogger(__name__)

OLD_INFIX = ".mhc-old-"
_UNREAD = object()
TMP_SUFFIX = ".mhc-tmp"
# -- the output folder ----------------------------------------------------------

def _carry_stamp(old: Path, new: Path) -> None:
    """The new marker keeps the time of the old one (see :mod:`mhc.repair`): only a run that
    checked the folders it keeps may move it (`mhc report` keeps them unchecked)."""
    try:
        st = os.stat(old)
    except OSError:
        return  # a new output: its run stamps the marker after its commit
    os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))


def lock_path(out: Path, inp: Path | None = None) -> Path:
    """The lock file of an output: in mhc's own cache folder (beside the output if that
    folder cannot be written, or lies in the input ``inp``: mhc -i ~)."""
    from .cache import default_cache_dir

    digest = hashlib.sha256(os.fsencode(os.path.realpath(out))).hexdigest()[:20]
    locks = default_cache_dir() / "locks"
    if inp is not None and inside(locks, inp):
        return out.parent / f".{out.name}.mhc-lock"
    try:
        locks.mkdir(parents=True, exist_ok=True)
        if os.access(locks, os.W_OK):
            return locks / f"{digest}.lock"
    except OSError:
        pass
    return out.parent / f".{out.name}.mhc-lock"


class OutputFolder:
    """An mhc output folder: lock, staging, moves, swap.

    ``with OutputFolder(out, inp) as of: build in of.stage(); of.keep("phash_8"); of.commit()``.
    """

    def __init__(self, out: str | Path, inp: Path, *, background_retire: bool = True):
        self.out = Path(os.path.realpath(out))
        self.inp = inp
        self.parent = self.out.parent
        self.staging = self.parent / f".{self.out.name}{STAGING_INFIX}{os.getpid()}"
        self._lock_fd: int | None = None
        self._lock_path: Path | None = None
        # what commit does, in order, before the swap: [kind, a, b] (see do_change); each undoable
        self._ops: list[list[str]] = []
        self._background = background_retire
        self.committed = False
        self._since: int | None = None  # the staging folder, open from its making: see _flush
        self._previous: dict | None | object = _UNREAD  # the summary this run replaces, read once
        self.not_made: list[str] = []  # what the checks found that mhc did not make (see refuse_not_made)
        self.changed: list[str] = []  # ... and copies it made that were changed since

    def __enter__(self) -> "OutputFolder":
        check_output(self.out, self.inp)
        try:
            self.parent.mkdir(parents=True, exist_ok=True)
            self._lock()
        except OSError as e:
            raise fault(e, f"cannot create {self.parent}") from None
        try:
            self._recover()
            self.check_top_level()
            self.refuse_not_made()
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._since is not None:
            os.close(self._since)
            self._since = None
        try:
            if not self.committed and (self.staging / JOURNAL).exists():
                undo_changes(read_journal(self.staging / JOURNAL))
            if not self.committed and self.staging.exists():
                remove_tree(self.staging)
        except OSError:
            pass  # the next run removes it
        finally:
            self._unlock()

    # -- building ------------------------------------------------------------------------
    def stage(self) -> Path:
        """Create the (hidden, sibling) staging folder the new tree is built in."""
        if not self.staging.exists():
            try:
                self.staging.mkdir()
                # open from here on: the flush before the commit then also reports the writes
                # the kernel failed in the background meanwhile (Linux reports those since open)
                self._since = os.open(self.staging, os.O_RDONLY)
                (self.staging / MARKER).write_text("This folder was made by mhc; mhc may replace it.\n")
                _carry_stamp(self.out / MARKER, self.staging / MARKER)
            except OSError as e:
                raise fault(e, f"cannot write in {self.parent}") from None
        return self.staging

    def mhc_home(self) -> Path:
        """The folder whose ``.mhc/`` (the report's thumbnails) this run uses: the live
        output's, kept across runs (moved into the new tree at commit), else the new tree's."""
        return self.out if (self.out / ".mhc").is_dir() else self.stage()

    def keep(self, rel: str) -> None:
        """Move ``out/rel`` (unchanged since the last run) into the new tree at commit."""
        self._ops.append(["mv", str(self.out / rel), str(self.staging / rel)])

    def at_commit(self, kind: str, a: Path | str, b: Path | str = "") -> None:
        """Queue one change for the critical section of :meth:`commit`: ``mv`` a -> b
        (parents in the new tree made as needed), ``mkdir`` a, ``rmdir`` a, ``ln`` (a
        symbolic link b holding a), ``rm`` (the symbolic link b, which holds a)."""
        self._ops.append([kind, str(a), str(b)])

    def replace_file(self, name: str, write: Callable[[Path], None]) -> None:
        """Atomically replace one top-level file of the current output (write, then rename);
        the temporary file never outlives a failure."""
        tmp = self.out / f".{name}{TMP_SUFFIX}"
        try:
            write(tmp)
            with open(tmp, "rb+") as f:  # on the disk before it replaces the file (a power cut: not empty)
                os.fsync(f.fileno())
            os.replace(tmp, self.out / name)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise fault(e, f"cannot write {self.out / name}") from None

    def previous_summary(self) -> dict | None:
        """The summary of the output this run replaces (None for a new or empty folder).
        A missing, unreadable or damaged one is refused (:func:`mhc.summary.load`): it is
        what tells which folders mhc made, so without it mhc would have to guess."""
        from .summary import load

        if self._previous is _UNREAD:  # the ownership check and the run both need it (0.1 s at 100,000 files)
            self._previous = load(self.out)
        return self._previous  # type: ignore[return-value]

    # -- committing ----------------------------------------------------------------------
    def commit(self) -> None:
        """Move the kept folders in, swap the trees, retire the old one. The new tree (and
        the journal) are on the disk before anything of the old one moves."""
        if not self.out.exists():
            self._flush()
            os.rename(self.staging, self.out)
            self.committed = True
            return
        journal = self.staging / JOURNAL
        journal.write_text(f"{0:012d}\n" + json.dumps({"out": str(self.out), "ops": self._ops}))
        self._flush()
        held: list[int] = []
        try:
            with signals_held(held):
                old = self._swap_in(journal)
        finally:
            if held and not self.committed:
                signal.raise_signal(held[0])  # the old tree is whole again: an ordinary interrupt
        if old == self.staging:
            renamed = self._old_name()
            os.rename(old, renamed)
            old = renamed
        retire(old, self._background)
        if held:
            try:
                signal.raise_signal(held[0])
            except KeyboardInterrupt as e:
                # it came during the swap, so the new tree is in place: the line must not
                # say "the previous output is unchanged" (mhc.cli reads this)
                e.output_replaced = True  # type: ignore[attr-defined]
                raise

    def _flush(self) -> None:
        """The new tree on the disk, or one line: a disk that failed a write of this run
        (its data would be lost after the swap, with exit status 0) leaves the old tree."""
        fd = self._since if self._since is not None else os.open(self.staging, os.O_RDONLY)
        try:
            flush_to_disk(fd)
        except OSError as e:
            raise EnvironmentFault(f"the disk holding {self.parent} failed to write the new output ({e.strerror}; "
                                   f"see dmesg); the previous output is unchanged: check the disk, free space if "
                                   f"it is full, and run again") from None
        finally:
            if fd != self._since:
                os.close(fd)

    def _swap_in(self, journal: Path) -> Path:
        """The critical section: make the journalled changes, swap the trees. On any
        failure the changes are undone, so the old tree is whole. Returns the old tree."""
        started = 0
        try:
            fd = os.open(journal, os.O_WRONLY)
            try:
                for op in self._ops:  # renames and a few links: microseconds each
                    # how many changes may have been made, written before each: an undo
                    # must never act on a change that was not made (its paths may be
                    # the old tree's own)
                    started += 1
                    os.pwrite(fd, b"%012d" % started, 0)
                    mark_progress(fd, started)
                    do_change(op, self.staging)
            finally:
                os.close(fd)
            if exchange(self.staging, self.out):
                old = self.staging
            else:
                old = self._old_name()
                os.rename(self.out, old)
                try:
                    os.rename(self.staging, self.out)
                except BaseException:
                    os.rename(old, self.out)  # the undo below works on the old tree in its place
                    raise
            self.committed = True
            (self.out / JOURNAL).unlink()
            return old
        except BaseException:  # OSError, or anything else: never leave the old tree in pieces
            if not self.committed:
                undo_changes(self._ops[:started])
                journal.unlink(missing_ok=True)
            raise

    def _old_name(self) -> Path:
        # pid and a clock: two runs in one process must not meet an old tree that the
        # previous one's detached remover is still deleting.
        return self.parent / f".{self.out.name}{OLD_INFIX}{os.getpid()}-{time.monotonic_ns()}"

    # -- locking and recovery -----------------------------------------------------------
    def _lock(self) -> None:
        # (two runs into one output lock the same file unless only one of them scans the
        # folder that holds mhc's cache folder: the same gap as an unwritable cache folder)
        path = lock_path(self.out, self.inp)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other = os.read(fd, 64).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise EnvironmentFault(f"another mhc run (pid {other}) is writing {self.out}; wait for it to finish "
                                       f"or choose another --output") from None
            # the run that held it removes the file as it lets go (_unlock): opened just
            # before that, this lock is on a file nobody else will see. Then take the new one.
            try:
                if os.fstat(fd).st_ino == os.stat(path).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd, self._lock_path = fd, path

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            # removed while still held, so lock files do not pile up (one per output ever
            # written); a run that opened it meanwhile sees that it is gone (_lock)
            try:
                os.unlink(self._lock_path)
            except OSError:
                pass
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _recover(self) -> None:
        """Under the lock: finish what a killed run left (moves, staging and old trees)."""
        prefix = f".{self.out.name}"
        for p in sorted(self.parent.glob(f"{prefix}{OLD_INFIX}*")):
            if not self.out.exists() and (p / MARKER).exists() and not being_removed(p):
                os.rename(p, self.out)  # killed between the two renames: first put the old tree back
                log.warning("restored the previous output from an interrupted run")
        for p in sorted(self.parent.glob(f"{prefix}{STAGING_INFIX}*")):
            j = p / JOURNAL
            if j.exists():  # killed inside a commit, before the swap: undo what it did
                undo_changes(read_journal(j, p, self.out))
                log.warning("restored the output of an interrupted run")
            if (p / MARKER).exists() or not any(p.iterdir()):
                remove_tree(p)
        if (self.out / JOURNAL).exists():  # killed right after the swap: the new tree is whole
            (self.out / JOURNAL).unlink()
        for p in sorted(self.parent.glob(f"{prefix}{OLD_INFIX}*")):
            if (p / MARKER).exists() and not being_removed(p):
                left = remove_tree(p, not_ours(p))
                if left:
                    log.warning("an earlier run left %s holding entries mhc did not make, e.g. %s; they were kept",
                                p, left[0])
        for tmp in (self.out.glob(f".*{TMP_SUFFIX}") if self.out.is_dir() else ()):
            tmp.unlink()  # a temporary file of a run that failed to replace it

    # -- ownership ----------------------------------------------------------------------
    def refuse_not_made(self) -> None:
        """After the checks of a stage: refuse, in one line, every entry they found that mhc
        did not make. Nothing has been changed yet (the checks only read)."""
        if self.not_made or self.changed:
            raise NotMade(sorted(set(self.not_made)), sorted(set(self.changed)))

    def check_top_level(self) -> None:
        """Refuse before any work if the output holds, where mhc replaces things, anything
        mhc did not make: at the top, in report/, in .mhc/, among algorithm folders."""
        if not self.out.is_dir():
            return
        prev = self.previous_summary() or {}
        algos = set(prev.get("algorithms", {}))
        for e in os.scandir(self.out):
            if e.name in TOP_LEVEL_FILES and e.is_file(follow_symlinks=False):
                continue
            if e.name in TOP_LEVEL_DIRS and e.is_dir(follow_symlinks=False):
                check_own_dir(Path(e.path), e.name, self.not_made)
                continue
            if e.name in algos and e.is_dir(follow_symlinks=False):
                for t in os.scandir(e.path):
                    if not (t.is_dir(follow_symlinks=False) and THRESHOLD_FOLDER.match(t.name)):
                        refuse(t.path, self.not_made)
                continue
            refuse(e.path, self.not_made)

    def check_deleting(self, rel: str, link_names: set[str], files_mode: bool,
                       as_made: Callable[[os.DirEntry], bool] | None = None) -> None:
        """Before a folder of links is replaced: every entry must be one mhc made (a
        cluster or unclustered folder of links named as mhc names them; copies and hard
        links also ``as_made``: see :func:`mhc.ownership.copies_as_made`)."""
        if not (self.out / rel).is_dir():
            return  # removed by hand: nothing to check
        for c in os.scandir(self.out / rel):
            if not (c.is_dir(follow_symlinks=False) and CLUSTER_FOLDER.match(c.name)):
                refuse(c.path, self.not_made)
                continue
            check_links(c.path, link_names, files_mode, self.not_made, as_made, self.changed)
