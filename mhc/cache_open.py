"""How the hash cache file is opened, created and recovered: the schema, a cache written by
a newer mhc left as it is, one that cannot be written read as it is, a damaged one of mhc's
own set aside. A part of :class:`~mhc.cache.HashCache`, which reads and writes the rows;
apart so that cache.py keeps to how hashes are stored and found."""
from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

from .cache_location import APPLICATION_ID, owned_cache
from .errors import CACHE_DISK_FAILING, EnvironmentFault, UsageError, printable

log = logging.getLogger("mhc.cache")  # (the warnings' logger, as before the split)

SCHEMA_VERSION = "2"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path BLOB PRIMARY KEY, dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, sample BLOB,
    width INTEGER, height INTEGER, format TEXT, taken TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hashes (
    path BLOB NOT NULL, hkey TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (path, hkey)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS failures (
    path BLOB NOT NULL, dkey TEXT NOT NULL, reason TEXT NOT NULL, PRIMARY KEY (path, dkey)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ignored (
    a BLOB NOT NULL, b BLOB NOT NULL, PRIMARY KEY (a, b)) WITHOUT ROWID;
"""
# Errors that say "cannot write here", never "this file is damaged"
_WRITE_FAULTS = ("readonly", "read-only", "disk is full", "disk i/o error", "unable to open", "out of memory")


def _schema(db: sqlite3.Connection) -> tuple[str] | None:
    try:
        return db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    except sqlite3.OperationalError:  # a new database: no meta table yet
        return None


def _newer(version: str) -> bool:
    """A schema this mhc does not know: a higher number, or not a number at all."""
    return not (version.isdigit() and int(version) <= int(SCHEMA_VERSION))


def _newer_file(db: sqlite3.Connection) -> str | None:
    """How a cache this mhc does not know was written ("by a newer mhc ..."), else None."""
    row = _schema(db)
    if row is None or not _newer(row[0] if isinstance(row[0], str) else ""):
        return None
    if isinstance(row[0], str) and row[0].isdigit():
        return f"was written by a newer mhc (cache schema {row[0]}; this one reads {SCHEMA_VERSION})"
    # a mark that is not a number: a future mhc may write one, but so may another program
    # or a hand (set to '' or bytes, it was called "a newer mhc's" and the user told to upgrade)
    return f"has a version mark this mhc does not know ({printable(repr(row[0]))[:40]}: a newer mhc's, or changed " \
           f"by another program)"


class CacheOpening:
    """Opening and recovery of a :class:`~mhc.cache.HashCache` (which sets ``path``,
    ``writable``, ``newer``, ``quiet``, ``untouched`` and ``_warned`` before opening)."""

    path: Path | None
    writable: bool
    newer: bool
    newer_how: str
    quiet: bool
    untouched: bool
    _warned: bool

    def _open(self, readonly: bool) -> sqlite3.Connection:
        if self.path is None:
            return self._init(sqlite3.connect(":memory:", isolation_level=None))
        if readonly:
            if not self.path.exists():
                self.writable = False
                return self._init(sqlite3.connect(":memory:", isolation_level=None))
            return self._open_readonly()
        if not self.path.exists():
            return self._create()
        try:
            db = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
            newer = _newer_file(db)
            if newer:
                db.close()
                return self._newer_one(newer)
            db.execute("PRAGMA journal_mode=WAL")
            return self._init(db)
        except sqlite3.DatabaseError as e:
            text = str(e).lower()
            if "locked" in text:
                raise EnvironmentFault(f"the hash cache {self.path} is locked by another program for over 30 s; "
                                       f"wait for it or use another --cache") from None
            if any(w in text for w in _WRITE_FAULTS) or not os.access(self.path.parent, os.W_OK):
                return self._open_readonly(reason=str(e))
            return self._set_aside(e)

    def _create(self) -> sqlite3.Connection:
        """A new cache is built under a temporary name and renamed into place, so a file at
        the cache path is always a whole, marked cache."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            db = sqlite3.connect(str(tmp), isolation_level=None)
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            self._init(db)
            db.close()
            os.replace(tmp, self.path)
        except (OSError, sqlite3.Error) as e:
            self._warn(f"cannot create the hash cache {self.path} ({getattr(e, 'strerror', None) or e}); "
                       f"this run keeps hashes in memory only")
            self.writable = False
            return self._init(sqlite3.connect(":memory:", isolation_level=None))
        db = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def _open_readonly(self, reason: str | None = None) -> sqlite3.Connection:
        self.writable = False
        if reason is not None:
            self._warn(f"the hash cache {self.path} cannot be written ({reason}); hashes are read from it, "
                       f"new ones are not saved")
        uri = self.path.resolve().as_uri()
        modes = ("?mode=ro&immutable=1",) if self.untouched else ("?mode=ro", "?mode=ro&immutable=1")
        if reason is None and not self.untouched and os.access(self.path, os.W_OK) and \
                os.access(self.path.parent, os.W_OK):
            # A read-only connection cannot remove the -wal and -shm files it makes beside a
            # WAL cache, so they stayed after every run (and a dry run made them). One that
            # may write, told to write nothing, removes them as it closes, as the last
            # connection does.
            modes = ("?mode=rw", *modes)
        for mode in modes:  # WAL files may be unwritable too
            try:
                db = sqlite3.connect(uri + mode, uri=True, timeout=30.0, isolation_level=None)
                if mode == "?mode=rw":
                    db.execute("PRAGMA query_only = ON")
                self._check(db)
                newer = _newer_file(db)
                if newer:
                    db.close()
                    return self._newer_one(newer)
                return db
            except sqlite3.DatabaseError:
                continue
        self._warn(f"the hash cache {self.path} cannot be read; this run keeps hashes in memory only")
        return self._init(sqlite3.connect(":memory:", isolation_level=None))

    def _newer_one(self, how: str) -> sqlite3.Connection:
        # two mhc versions sharing the default cache: migrating it down would drop the newer
        # one's hashes, and the newer one would drop this one's on its next run
        self._warn(f"the hash cache {self.path} {how}; this run leaves it as it is (its hashes and 'not a "
                   f"duplicate' marks are not used) and keeps hashes in memory only: upgrade mhc, or give this "
                   f"version its own --cache")
        self.writable, self.newer, self.newer_how = False, True, how
        return self._init(sqlite3.connect(":memory:", isolation_level=None))

    def _set_aside(self, error: Exception) -> sqlite3.Connection:
        if not owned_cache(self.path):  # never touch what mhc did not make (checked before, but not raced)
            raise UsageError(f"--cache {self.path} is not an mhc cache; choose another path") from None
        unreadable = _unreadable(self.path)
        if unreadable is not None:
            # A disk that fails some reads gives SQLite short pages, which it reports as "database
            # disk image is malformed": the cache is sound, its disk is not. Moved aside, it took
            # the user's "not a duplicate" marks with it, and the new one went on the same disk.
            self._warn(f"the hash cache {self.path} cannot be read ({unreadable}; {CACHE_DISK_FAILING}); it is left as "
                       f"it is and this run keeps hashes in memory only: check the disk, or choose another --cache",
                       always=True)
            self.writable = False
            return self._init(sqlite3.connect(":memory:", isolation_level=None))
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            for suffix in ("", "-wal", "-shm"):
                p = Path(str(self.path) + suffix)
                if p.exists():
                    os.replace(p, Path(str(aside) + suffix))
        except OSError as e:
            self._warn(f"the hash cache {self.path} is damaged ({error}) and cannot be moved aside ({e.strerror}); "
                       f"this run keeps hashes in memory only")
            self.writable = False
            return self._init(sqlite3.connect(":memory:", isolation_level=None))
        self._warn(f"the hash cache {self.path} was damaged ({error}); moved it to {aside} and started a new one",
                   always=True)
        return self._create()

    def _init(self, db: sqlite3.Connection) -> sqlite3.Connection:
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        elif row[0] != SCHEMA_VERSION:
            self._migrate(db, row[0])
        self._check(db)
        return db

    @staticmethod
    def _check(db: sqlite3.Connection) -> None:
        db.execute("SELECT count(*) FROM files").fetchone()

    @staticmethod
    def _migrate(db: sqlite3.Connection, old: str) -> None:
        """Schema 1 trusted size and mtime alone: its hashes are dropped (rehashed once),
        the user's "not a duplicate" marks are kept."""
        log.info("hash cache schema %s -> %s: hashes are recomputed once", old, SCHEMA_VERSION)
        for table in ("hashes", "failures"):
            db.execute(f"DROP TABLE IF EXISTS {table}")
        db.executescript(_SCHEMA)
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (SCHEMA_VERSION,))

    def _warn(self, message: str, always: bool = False) -> None:
        # cache faults never stop a run; said once, at WARNING (shown with -q too)
        if self.quiet:
            return
        if always or not self._warned:
            log.warning(message)
            self._warned = True


def _unreadable(path: Path) -> str | None:
    """Why ``path`` cannot be read to its end (the system's words), or None if it can."""
    try:
        with open(path, "rb") as f:
            while f.read(1 << 20):
                pass
    except OSError as e:
        return e.strerror or str(e)
    return None
