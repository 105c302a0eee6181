"""A persistent SQLite store of hashes, so reruns only compute what is missing.

Rows are keyed by the file's path and the *hash key* (algorithm + decoder settings, e.g.
``phash_16|d1:fast256``) and remember the file's size and mtime: a row is valid only
while both still match. Failures are cached the same way, so a warm rerun decodes
nothing, not even the bad files. Paths are stored as bytes (``os.fsencode``), so names
that are not valid UTF-8 round-trip.

Safety: WAL journal, one transaction per batch, a busy timeout for concurrent runs.
A file that is not a readable mhc cache is set aside (renamed) and a new one started.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .discover import MediaFile

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS hashes (
    path BLOB NOT NULL, hkey TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    value BLOB NOT NULL, PRIMARY KEY (path, hkey)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ignored (
    a BLOB NOT NULL, b BLOB NOT NULL, PRIMARY KEY (a, b)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS failures (
    path BLOB NOT NULL, dkey TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    reason TEXT NOT NULL, PRIMARY KEY (path, dkey)) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class CacheInfo:
    path: str
    files: int
    hashes: int
    failures: int
    bytes: int
    keys: dict[str, int]


class HashCache:
    """SQLite hash cache. ``HashCache(None)`` is an in-memory cache (``--no-cache``)."""

    def __init__(self, path: str | Path | None, *, on_warning=None):
        self.path = None if path is None else Path(path)
        self._warn = on_warning or log.warning
        self.db = self._open()

    # -- opening and recovery -------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        target = ":memory:" if self.path is None else str(self.path)
        db = sqlite3.connect(target, timeout=30.0, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        elif row[0] != SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"cache schema {row[0]}, expected {SCHEMA_VERSION}")
        db.execute("SELECT count(*) FROM hashes").fetchone()
        return db

    def _open(self) -> sqlite3.Connection:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return self._connect()
        except sqlite3.DatabaseError as e:
            if self.path is None or isinstance(e, sqlite3.OperationalError) and "locked" in str(e):
                raise
            aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            for suffix in ("", "-wal", "-shm"):
                p = Path(str(self.path) + suffix)
                if p.exists():
                    os.replace(p, Path(str(aside) + suffix))
            self._warn(f"hash cache {self.path} was unreadable ({e}); moved it to {aside} and started a new one")
            return self._connect()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "HashCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reads ----------------------------------------------------------------
    def lookup(
        self, files: list[MediaFile], hkeys: list[str], dkeys: list[str]
    ) -> tuple[dict[str, dict[str, bytes]], dict[str, dict[str, str]]]:
        """Valid cached values for ``files``.

        Returns ``(hashes, failures)``: ``hashes[path][hkey] = value`` and
        ``failures[path][dkey] = reason``, only where size and mtime still match.
        """
        ident = {os.fsencode(f.path): f for f in files}
        hashes: dict[str, dict[str, bytes]] = {}
        failures: dict[str, dict[str, str]] = {}
        if not ident:
            return hashes, failures
        marks = ",".join("?" * len(hkeys))
        # one scan per run instead of one query per file: reruns of 100k files stay fast
        for path, hkey, size, mtime, value in self.db.execute(
            f"SELECT path, hkey, size, mtime_ns, value FROM hashes WHERE hkey IN ({marks})", hkeys
        ):
            f = ident.get(path)
            if f is not None and f.size == size and f.mtime_ns == mtime:
                hashes.setdefault(f.path, {})[hkey] = value
        dmarks = ",".join("?" * len(dkeys))
        for path, dkey, size, mtime, reason in self.db.execute(
            f"SELECT path, dkey, size, mtime_ns, reason FROM failures WHERE dkey IN ({dmarks})", dkeys
        ):
            f = ident.get(path)
            if f is not None and f.size == size and f.mtime_ns == mtime:
                failures.setdefault(f.path, {})[dkey] = reason
        return hashes, failures

    # -- writes ---------------------------------------------------------------
    def store(
        self,
        files: dict[str, MediaFile],
        hashes: Iterable[tuple[str, str, bytes]],
        failures: Iterable[tuple[str, str, str]] = (),
    ) -> None:
        """Store ``(path, hkey, value)`` hashes and ``(path, dkey, reason)`` failures in one transaction."""
        rows = [(os.fsencode(p), k, files[p].size, files[p].mtime_ns, v) for p, k, v in hashes]
        frows = [(os.fsencode(p), k, files[p].size, files[p].mtime_ns, r) for p, k, r in failures]
        with self._transaction():
            self.db.executemany("INSERT OR REPLACE INTO hashes VALUES (?,?,?,?,?)", rows)
            self.db.executemany("INSERT OR REPLACE INTO failures VALUES (?,?,?,?,?)", frows)

    def forget_missing(self, root: str, present: Iterable[str]) -> int:
        """Drop rows for files under ``root`` that are not in ``present`` (deleted files)."""
        keep = {os.fsencode(p) for p in present}
        prefix = os.fsencode(os.path.join(os.path.abspath(root), ""))
        gone = set()
        for table in ("hashes", "failures"):
            for (path,) in self.db.execute(f"SELECT DISTINCT path FROM {table}"):
                if path.startswith(prefix) and path not in keep:
                    gone.add(path)
        if gone:
            with self._transaction():
                for table in ("hashes", "failures"):
                    self.db.executemany(f"DELETE FROM {table} WHERE path = ?", [(p,) for p in gone])
        return len(gone)

    # -- "not a duplicate" ------------------------------------------------------------
    @staticmethod
    def _pair(a: str, b: str) -> tuple[bytes, bytes]:
        x, y = os.fsencode(os.path.realpath(a)), os.fsencode(os.path.realpath(b))
        return (x, y) if x <= y else (y, x)

    def ignore(self, a: str, b: str) -> None:
        """Remember that ``a`` and ``b`` are not duplicates: later runs never link them."""
        with self._transaction():
            self.db.execute("INSERT OR IGNORE INTO ignored VALUES (?, ?)", self._pair(a, b))

    def unignore(self, a: str, b: str) -> bool:
        with self._transaction():
            return self.db.execute("DELETE FROM ignored WHERE a = ? AND b = ?", self._pair(a, b)).rowcount > 0

    def ignored(self) -> list[tuple[str, str]]:
        return [(os.fsdecode(a), os.fsdecode(b)) for a, b in self.db.execute("SELECT a, b FROM ignored ORDER BY a, b")]

    def clear(self) -> int:
        """Delete every cached row; returns how many hashes were dropped."""
        n = self.db.execute("SELECT count(*) FROM hashes").fetchone()[0]
        with self._transaction():
            self.db.execute("DELETE FROM hashes")
            self.db.execute("DELETE FROM failures")
        self.db.execute("VACUUM")
        return n

    def info(self) -> CacheInfo:
        q = self.db.execute
        keys = dict(q("SELECT hkey, count(*) FROM hashes GROUP BY hkey ORDER BY hkey").fetchall())
        size = 0
        if self.path is not None:
            size = sum(
                p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists()
            )
        return CacheInfo(
            path=str(self.path) if self.path else ":memory:",
            files=q("SELECT count(DISTINCT path) FROM hashes").fetchone()[0],
            hashes=q("SELECT count(*) FROM hashes").fetchone()[0],
            failures=q("SELECT count(*) FROM failures").fetchone()[0],
            bytes=size,
            keys=keys,
        )

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
