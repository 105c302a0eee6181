"""A persistent SQLite store of hashes, so reruns only compute what is missing.

Per file the ``files`` table keeps its identity (device, inode, size, mtime, ctime and a
digest of a few sampled blocks) and facts about it (pixel size, format, date taken);
``hashes`` holds one row per (file, hash key) and ``failures`` the files that cannot be
decoded. A file's rows are trusted while its identity holds: size and mtime must match;
when inode or ctime moved (a copy over it with ``touch -r``, a rename swap, ``chmod``, a
restore from backup) the sampled digest decides, so a warm rerun reads no file content at
all and a changed file is never served a stale hash. The device number alone may move (a
disk mounted again): it is recorded anew.

Only failures about the content are cached (undecodable, truncated, not an image); a
failure about access (permission, I/O, a dead worker) or about an option (--max-pixels)
is retried on the next run.

Faults: a cache that cannot be written (read-only, disk full) is used read-only with one
warning; only a file that is provably mhc's (its SQLite ``application_id``, or inside
mhc's own cache folder) and damaged is set aside. mhc never renames, rewrites or deletes
any other file: a ``--cache`` path holding something else is refused before any work.
"""
from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .cache_location import (  # noqa: F401
    APPLICATION_ID,
    check_cache_path,
    default_cache_dir,
    owned_cache,
)
from .cache_open import SCHEMA_VERSION, CacheOpening  # noqa: F401  (SCHEMA_VERSION re-exported)
from .cache_user import CacheCommands, CacheInfo  # noqa: F401  (CacheInfo re-exported)
from .discover import MediaFile
from .errors import EnvironmentFault
from .identity import FileInfo, content_sample, inodes_made_up  # noqa: F401  (FileInfo, content_sample re-exported)

log = logging.getLogger(__name__)


def _real(path: bytes) -> bytes:
    """A path as the "not a duplicate" marks hold it (:meth:`CacheCommands._pair`): its real path."""
    return os.path.realpath(path)


def _i64(v: int) -> int:
    """``v`` as SQLite can store it: INTEGER is signed 64-bit, and an mtime past 2262 in ns (a
    camera's clock, a bad archive: ext4 keeps up to 2446), a timestamp before 1678 or a large
    inode (overlayfs' xino, NFS) does not fit. Kept as its two's-complement image, one to one
    across any 2**64 range, so a changed file still differs. The reader compares the raw value
    first and calls this only where that differs: nothing is paid on ordinary files."""
    return (v + 2**63) % 2**64 - 2**63


def _facts_ok(sample, width, height, fmt, taken) -> bool:
    """Whether a files row's facts have the types mhc writes (see :meth:`HashCache.lookup`)."""
    return (type(sample), type(width), type(height), type(fmt), type(taken)) in _FACT_TYPES


# every combination of the types mhc writes as a file's sample, width, height, format and
# date taken (one set lookup per row: a warm rerun reads every row)
_FACT_TYPES = frozenset(itertools.product((bytes, type(None)), (int, type(None)), (int, type(None)),
                                          (str, type(None)), (str, type(None))))


def older_version(key: str) -> bool:
    """Whether a hash key (``phash_8|d2:fast``, ``meta|v1:n20:key:s256``, ``crops1|d3:fast``)
    or a failure's decoder key (``d2:fast``) was made by an older decoder than this mhc's:
    such rows are never read again. A newer mhc's keys (a cache shared across an upgrade)
    are not older."""
    name, sep, tag = key.partition("|")
    if not sep:
        name, tag = "", key
    current = _current_versions()
    if name.startswith("crops") and name[5:].isdigit() and int(name[5:]) < current["crops"]:
        return True
    version = tag.partition(":")[0]
    kind, number = version[:1], version[1:]
    return kind in current and number.isdigit() and int(number) < current[kind]


@functools.cache
def _current_versions() -> dict[str, int]:
    # the decoders' own tags, not their format written again here (constants, imported
    # late: the video reader loads PyAV and the crop matcher OpenCV)
    from .crops import VERSION as CROPS_VERSION
    from .decode import DecodeSettings
    from .video import VideoSettings

    tags = (DecodeSettings().cache_tag(), VideoSettings().cache_tag())
    return {"crops": int(CROPS_VERSION), **{t[:1]: int(t.partition(":")[0][1:]) for t in tags}}


@dataclass
class Cached:
    """What the cache holds for a set of files (only rows whose file identity holds)."""

    values: dict[str, dict[str, bytes]] = field(default_factory=dict)  # path -> hash key -> value
    failures: dict[str, dict[str, str]] = field(default_factory=dict)  # path -> decoder key -> reason
    info: dict[str, FileInfo] = field(default_factory=dict)  # path -> facts


class HashCache(CacheOpening, CacheCommands):
    """SQLite hash cache. ``HashCache(None)`` is an in-memory cache (``--no-cache``);
    ``readonly=True`` never creates or changes the file (``--dry-run``)."""

    def __init__(self, path: str | Path | None, *, readonly: bool = False, untouched: bool = False,
                 quiet: bool = False, strict: bool = False):
        self.path = None if path is None else Path(path)
        self.writable = not readonly
        self.newer = False  # written by a newer mhc: left as it is (see _newer_one)
        self.newer_how = ""  # ... how it was written, as the user is told
        # quiet: warnings said by another instance of the same run; strict: a command on the
        # cache itself (mhc cache, mhc ignore), where a newer cache is refused in one line
        self.quiet = quiet or strict
        # untouched: not even SQLite's -wal/-shm files (which a read-only reader of a WAL
        # database creates): for a cache inside the input folder, where mhc never writes
        self.untouched = untouched
        self._warned = False
        self._stale: set[bytes] = set()  # files whose identity changed: their old rows go on the next store
        self.db = self._open(readonly)
        if self.newer and strict:
            self.db.close()
            raise self.newer_refused()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "HashCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reads ----------------------------------------------------------------
    def lookup(self, files: list[MediaFile], hkeys: Iterable[str], dkeys: Iterable[str], *,
               fits: Mapping[str, int | Callable[[bytes], bool]] | None = None) -> Cached:
        """Valid cached values, content failures and facts for ``files``.

        A file's rows count only while its identity holds (see the module docstring), and a
        row only while its columns hold what mhc writes there: another program (or a hand)
        can write any type into any SQLite column. A value must be bytes, of the length
        ``fits`` gives for its key (:meth:`mhc.hashing.HashPlan.fits`: negative, a multiple
        of it) or passing its check; one that is not is not read, so the file is hashed
        again and the row replaced, where it reached pair search ("hashes of different
        lengths") or ended the run with a TypeError."""
        ident = {os.fsencode(f.path): f for f in files}
        out = Cached()
        if not ident:
            return out
        valid: set[bytes] = set()
        moved: list[tuple[int, int, int, bytes]] = []
        known: set[bytes] = set()
        for path, dev, ino, size, mtime, ctime, sample, w, h, fmt, taken in self.db.execute(
                "SELECT path, dev, ino, size, mtime_ns, ctime_ns, sample, width, height, format, taken FROM files"):
            f = ident.get(path)
            if f is None:
                continue
            known.add(path)
            if f.size != size or (f.mtime_ns != mtime and _i64(f.mtime_ns) != mtime) or not _facts_ok(
                    sample, w, h, fmt, taken):
                self._stale.add(path)
                continue
            remounted = _i64(f.dev) != dev and f.dev != dev
            if (((f.ino, f.ctime_ns) == (ino, ctime) or (_i64(f.ino), _i64(f.ctime_ns)) == (ino, ctime))
                    and not (remounted and inodes_made_up(f.path))):
                # The device number alone moved: a disk mounted again (a USB disk plugged in after
                # another, a loop device). Every file's sample was read then: 10 reads a file, each
                # a seek on a spinning disk (an estimate, not measured: some 2 hours for 100,000
                # photos on a USB hard disk). A different file with the same inode, ctime to the
                # nanosecond, size and mtime is not a case to read for; but where inode numbers
                # are made up at each mount (FAT, exFAT, FUSE) the same one says nothing.
                if remounted:
                    moved.append((_i64(f.dev), _i64(f.ino), _i64(f.ctime_ns), path))
            else:
                try:
                    same = sample is not None and content_sample(f.path, f.size) == sample
                except OSError:
                    same = False
                if not same:
                    self._stale.add(path)
                    continue
                moved.append((_i64(f.dev), _i64(f.ino), _i64(f.ctime_ns), path))
            valid.add(path)
            out.info[f.path] = FileInfo(w, h, fmt, taken, sample)
        if moved and self.writable:
            self._write(lambda: self.db.executemany("UPDATE files SET dev=?, ino=?, ctime_ns=? WHERE path=?", moved))
        source: dict[bytes, tuple[bytes, ...]] = {}  # a known path -> new paths its rows serve
        if len(known) < len(ident):
            source = self._twins({p: f for p, f in ident.items() if p not in known}, out)
        keys = sorted(set(hkeys))
        fits = fits or {}
        # (checked here, not in SQL: a CASE on the key in the query was slower, +0.2 s per
        # 100,000 files of 5 keys against +0.06-0.08 s for this: docs/benchmarks.md)
        for path, hkey, value in self.db.execute(
                f"SELECT path, hkey, value FROM hashes WHERE hkey IN ({','.join('?' * len(keys))})", keys):
            n = fits.get(hkey)
            if type(value) is not bytes or not value or (n is not None and (
                    not n(value) if callable(n) else len(value) != n if n > 0 else len(value) % n)):
                continue
            if path in valid:
                out.values.setdefault(ident[path].path, {})[hkey] = value
            for p in source.get(path, ()):  # (empty on a warm rerun: no tuple built per row)
                out.values.setdefault(ident[p].path, {})[hkey] = value
        dk = sorted(set(dkeys))
        for path, dkey, reason in self.db.execute(
                f"SELECT path, dkey, reason FROM failures WHERE dkey IN ({','.join('?' * len(dk))})", dk):
            if type(reason) is not str:
                continue
            if path in valid:
                out.failures.setdefault(ident[path].path, {})[dkey] = reason
            for p in source.get(path, ()):
                out.failures.setdefault(ident[p].path, {})[dkey] = reason
        return out

    def _twins(self, new: dict[bytes, MediaFile], out: Cached) -> dict[bytes, tuple[bytes, ...]]:
        """Cached rows that serve files at new paths (moved, renamed, or copied with their
        mtime: a reorganised library is not hashed again): a known path -> the new paths
        its rows serve (their facts go into ``out``). The rows are copied to the new paths,
        so the next run finds them there once the old path's rows are dropped."""
        from .identity import twins

        found = twins(self.db.execute("SELECT path, size, mtime_ns, sample, width, height, format, taken FROM files"),
                      {p: (f.path, f.size, _i64(f.mtime_ns)) for p, f in new.items()})
        source: dict[bytes, tuple[bytes, ...]] = {}
        found = {p: row for p, row in found.items()  # (another program's rows: a path as text, or with a NUL)
                 if type(row[0]) is bytes and b"\0" not in row[0] and _facts_ok(*row[3:])}
        for p, (old, _, _, sample, w, h, fmt, taken) in found.items():
            source[old] = source.get(old, ()) + (p,)
            out.info[new[p].path] = FileInfo(w, h, fmt, taken, sample)

        def copy() -> None:
            for p, (old, size, _, sample, w, h, fmt, taken) in found.items():
                f = new[p]
                self.db.execute("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                                (p, _i64(f.dev), _i64(f.ino), size, _i64(f.mtime_ns), _i64(f.ctime_ns), sample,
                                 w, h, fmt, taken))
                self.db.execute("INSERT OR REPLACE INTO hashes SELECT ?, hkey, value FROM hashes WHERE path = ?",
                                (p, old))
                self.db.execute("INSERT OR REPLACE INTO failures SELECT ?, dkey, reason FROM failures WHERE path = ?",
                                (p, old))
            # the user's "not a duplicate" marks follow the files (kept by real path: a renamed
            # folder lost them, and the next run linked what the user had kept apart); the old
            # paths' marks stay, in case they come back
            moved: dict[bytes, list[bytes]] = {}
            for p, row in found.items():
                moved.setdefault(_real(row[0]), []).append(_real(p))
            for a, b in self.db.execute("SELECT a, b FROM ignored").fetchall():
                if a in moved or b in moved:
                    self.db.executemany("INSERT OR IGNORE INTO ignored VALUES (?, ?)",
                                        [(min(x, y), max(x, y)) for x in moved.get(a, [a]) for y in moved.get(b, [b])])
        if found and self.writable:
            self._write(copy)
        return source

    # -- writes ---------------------------------------------------------------
    def store(self, rows: Iterable[tuple[MediaFile, FileInfo | None, dict[str, bytes], tuple[str, str] | None]]) -> None:
        """Store, per file: its identity and facts, its new hash values (key -> value) and
        a content failure (decoder key, reason), in one transaction. A file whose identity
        changed loses its older rows first, and a file hashed again after an upgrade loses
        the rows an older decoder made (see :func:`older_version`), so a cache does not
        grow by a copy per upgrade. Write faults turn the cache read-only."""
        rows = list(rows)
        if not rows or not self.writable:
            return

        def write() -> None:
            for f, info, values, failure in rows:
                p = os.fsencode(f.path)
                if p in self._stale:
                    self.db.execute("DELETE FROM hashes WHERE path = ?", (p,))
                    self.db.execute("DELETE FROM failures WHERE path = ?", (p,))
                    self._stale.discard(p)
                elif values or failure is not None:  # a few primary-key reads per file hashed
                    self._drop_older(p)
                i = info or FileInfo()
                self.db.execute("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                                (p, _i64(f.dev), _i64(f.ino), f.size, _i64(f.mtime_ns), _i64(f.ctime_ns), i.sample,
                                 i.width, i.height, i.format, i.taken))
                self.db.executemany("INSERT OR REPLACE INTO hashes VALUES (?,?,?)",
                                    [(p, k, v) for k, v in values.items()])
                if failure is not None:
                    self.db.execute("INSERT OR REPLACE INTO failures VALUES (?,?,?)", (p, *failure))

        self._write(write)

    def _drop_older(self, p: bytes) -> None:
        for table, column in (("hashes", "hkey"), ("failures", "dkey")):
            old = [(p, k) for (k,) in self.db.execute(f"SELECT {column} FROM {table} WHERE path = ?", (p,))
                   if type(k) is not str or older_version(k)]  # (a key that is not text: another program's)
            if old:
                self.db.executemany(f"DELETE FROM {table} WHERE path = ? AND {column} = ?", old)

    def forget_missing(self, root: str, present: Iterable[str]) -> int:
        """Drop rows of files under ``root`` that are not in ``present`` and were deleted:
        the nearest folder above them that is there is on their filesystem. Files of a disk
        not mounted now (a USB disk inside the input, unplugged for this run) keep their
        hashes: the folder it is mounted on lies on another filesystem."""
        if not self.writable:
            return 0
        keep = {os.fsencode(p) for p in present}
        prefix = os.fsencode(os.path.join(os.path.abspath(root), ""))
        devices: dict[bytes, int | None] = {}  # folder -> device of its nearest existing folder
        gone = [(p,) for p, dev in self.db.execute("SELECT path, dev FROM files")
                if type(p) is bytes and p.startswith(prefix) and p not in keep and _device_above(p, devices) == dev]
        if gone:
            def write() -> None:
                for table in ("files", "hashes", "failures"):
                    self.db.executemany(f"DELETE FROM {table} WHERE path = ?", gone)
            self._write(write)
        return len(gone)

    # -- the outputs made with this cache (where their report thumbnails lie) ------------------
    MAX_OUTPUTS = 8

    def outputs(self) -> list[str]:
        """The output folders of runs with this cache, most recent first (see
        :meth:`remember_output`)."""
        try:
            row = self.db.execute("SELECT value FROM meta WHERE key = 'outputs'").fetchone()
            value = json.loads(row[0]) if row else []
        except (sqlite3.Error, ValueError):
            return []
        return [o for o in value if isinstance(o, str)] if isinstance(value, list) else []

    def remember_output(self, out: str) -> None:
        """Note that ``out`` shows this cache's files: a new output takes the thumbnails it
        lacks from the others' instead of decoding every file again. Best effort (a cache
        that cannot be written remembers nothing)."""
        known = self.outputs()
        if not self.writable or self.newer or known[:1] == [out]:  # (a rerun into the same output writes nothing)
            return
        value = json.dumps([out] + [o for o in known if o != out][:self.MAX_OUTPUTS - 1])
        try:  # not through _write: a cache that cannot be written is said once, by what it fails to save
            with self._transaction():
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('outputs', ?)", (value,))
        except sqlite3.Error:
            pass

    def _write(self, fn) -> bool:
        """Run ``fn`` in one transaction; on a write fault (disk full, read-only, I/O) the
        cache becomes read-only with one warning and the run goes on."""
        if not self.writable:
            return False
        try:
            with self._transaction():
                fn()
            return True
        except sqlite3.OperationalError as e:
            if "locked" in str(e).lower():
                raise EnvironmentFault(f"the hash cache {self.path} stayed locked by another mhc run for 30 s; "
                                       f"wait for it or use another --cache") from None
            self.writable = False
            # (SQLite says "disk I/O error" for what the kernel called EIO: a failing or
            # disconnected disk, where free space and permissions are not the cure)
            fix = "check its disk (see dmesg) or choose another --cache" if "i/o error" in str(e).lower() else \
                "free some space or make it writable"
            self._warn(f"the hash cache {self.path} cannot be written ({e}); this run goes on without saving "
                       f"new hashes: {fix}, then run again")
            return False
        except sqlite3.DatabaseError as e:
            self.writable = False
            self._warn(f"the hash cache {self.path} is damaged ({e}); this run goes on without saving new hashes",
                       always=True)
            return False

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise
        self.db.execute("COMMIT")


def _device_above(path: bytes, memo: dict[bytes, int | None]) -> int | None:
    """The device of the nearest folder above ``path`` that exists (None if none can be
    read), remembered per folder in ``memo``."""
    folder = os.path.dirname(path)
    if folder not in memo:
        try:
            memo[folder] = os.stat(folder).st_dev
        except (OSError, ValueError):  # (ValueError: a NUL in a path another program wrote)
            up = os.path.dirname(folder)
            memo[folder] = None if up == folder else _device_above(folder, memo)
    return memo[folder]
