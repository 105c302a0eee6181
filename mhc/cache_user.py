"""What the user does with the hash cache itself: the "not a duplicate" marks
(``mhc ignore``), ``mhc cache info`` and ``mhc cache clear``. A part of
:class:`~mhc.cache.HashCache`, which owns the connection; apart so that cache.py keeps to
how hashes are stored, opened and recovered."""
from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from .errors import EnvironmentFault, UsageError


@dataclass(frozen=True)
class CacheInfo:
    path: str
    files: int
    hashes: int
    failures: int
    ignored: int
    bytes: int
    keys: dict[str, int]


class CacheCommands:
    """The user's operations on a :class:`~mhc.cache.HashCache` (which provides ``db``,
    ``path``, ``newer`` and ``_write``)."""

    db: sqlite3.Connection
    path: Path | None
    newer: bool
    newer_how: str

    def newer_refused(self) -> UsageError:
        """What the user is told when this mhc is asked to change a newer mhc's cache."""
        return UsageError(f"the hash cache {self.path} {self.newer_how}; use that mhc for this (this one leaves it "
                          f"as it is)")

    @staticmethod
    def _pair(a: str, b: str) -> tuple[bytes, bytes]:
        x, y = os.fsencode(os.path.realpath(a)), os.fsencode(os.path.realpath(b))
        return (x, y) if x <= y else (y, x)

    def ignore(self, a: str, b: str) -> None:
        """Remember that ``a`` and ``b`` are not duplicates: later runs never link them."""
        self._user_write(lambda: self.db.execute("INSERT OR IGNORE INTO ignored VALUES (?, ?)", self._pair(a, b)))

    def unignore(self, a: str, b: str) -> bool:
        before = self.db.execute("SELECT count(*) FROM ignored").fetchone()[0]
        self._user_write(lambda: self.db.execute("DELETE FROM ignored WHERE a = ? AND b = ?", self._pair(a, b)))
        return self.db.execute("SELECT count(*) FROM ignored").fetchone()[0] < before

    def ignored(self) -> list[tuple[str, str]]:
        return [(os.fsdecode(a), os.fsdecode(b)) for a, b in self.db.execute("SELECT a, b FROM ignored ORDER BY a, b")
                if type(a) is bytes and type(b) is bytes]  # (mhc writes paths as bytes; other rows are not its)

    def _user_write(self, fn) -> None:
        """The user's own decisions must be saved or the command fails clearly."""
        if self.newer:
            raise self.newer_refused()
        # on the disk before mhc says it is saved: the hashes' commits do not wait for it
        # (synchronous=NORMAL: a power cut may roll the last ones back while another mhc has
        # the cache open; hashes are computed again, the user's decisions would be lost)
        self.db.execute("PRAGMA synchronous=FULL")
        try:
            saved = self._write(fn)
        finally:
            self.db.execute("PRAGMA synchronous=NORMAL")
        if not saved:
            raise EnvironmentFault(f"cannot save to the hash cache {self.path}; make it writable and try again")

    def clear(self) -> int:
        """Delete every cached hash and failure (not the "not a duplicate" marks)."""
        n = self.db.execute("SELECT count(*) FROM hashes").fetchone()[0]

        def write() -> None:
            for table in ("files", "hashes", "failures"):
                self.db.execute(f"DELETE FROM {table}")
        self._user_write(write)
        self.db.execute("VACUUM")
        return n

    def info(self) -> CacheInfo:
        q = self.db.execute
        keys: dict[str, int] = {}
        for k, n in q("SELECT hkey, count(*) FROM hashes GROUP BY hkey ORDER BY hkey"):
            k = k if type(k) is str else "rows whose key is not text (written by another program; never read)"
            keys[k] = keys.get(k, 0) + n
        size = 0
        if self.path is not None:
            size = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
        return CacheInfo(
            path=str(self.path) if self.path else ":memory:",
            files=q("SELECT count(*) FROM files").fetchone()[0],
            hashes=q("SELECT count(*) FROM hashes").fetchone()[0],
            failures=q("SELECT count(*) FROM failures").fetchone()[0],
            ignored=q("SELECT count(*) FROM ignored").fetchone()[0],
            bytes=size,
            keys=keys,
        )
