"""Where the hash cache lives, and which files there are provably mhc's.

mhc never renames, rewrites or deletes a file it did not make: a ``--cache`` path is
accepted only if nothing is there yet, or what is there is provably an mhc cache (the
SQLite header carries mhc's application id, or it is in mhc's own cache folder).
"""
from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from .discover import enclosing_output
from .errors import CACHE_DISK_FAILING, EnvironmentFault, UsageError
from .paths import inside

APPLICATION_ID = 0x6D686321  # "mhc!" in the SQLite header: this file is mhc's cache
SQLITE_MAGIC = b"SQLite format 3\x00"


def default_cache_dir() -> Path:
    from .options import default_cache_path

    return default_cache_path().parent


def owned_cache(path: Path) -> bool:
    """Whether ``path`` is provably mhc's: inside mhc's own cache folder, or an SQLite file
    carrying mhc's application id or mhc's tables."""
    try:
        if Path(os.path.realpath(path)).parent == Path(os.path.realpath(default_cache_dir())):
            return True
        with open(path, "rb") as f:
            head = f.read(100)
    except OSError:
        return False
    if not head.startswith(SQLITE_MAGIC):
        return False
    if int.from_bytes(head[68:72], "big") == APPLICATION_ID:
        return True
    try:  # a cache of the previous version (no application id): it has mhc's tables
        db = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            return {"meta", "hashes", "failures"} <= tables
        finally:
            db.close()
    except sqlite3.Error:
        return False


def check_cache_path(path: Path, inp: Path, out: Path, default: bool = False, run: bool = True) -> None:
    """Refuse a cache path that would put something at risk, or cannot be read, before any
    work starts (``default``: the user did not choose it; ``run``: for a run, which can do
    without a cache, not for a command about the cache itself)."""
    real = Path(os.path.realpath(path))
    # the default's place comes from XDG_CACHE_HOME (or HOME): "--cache X" named an option never typed
    label = f"the default hash cache {path} (in your user cache folder)" if default else f"--cache {path}"
    if inside(real, inp):
        if default:  # mhc -i ~: the user cache folder is in the input
            raise UsageError(f"the default hash cache {path} is inside the input folder {inp}, where mhc never "
                             f"writes; pass --cache FILE outside it (e.g. --cache /var/tmp/mhc-cache.sqlite), or "
                             f"--no-cache")
        raise UsageError(f"--cache {path} is inside the input folder; mhc never writes there. Choose a path "
                         f"outside it (the default is your user cache folder)")
    if inside(real, out):
        raise UsageError(f"{label} is inside the output folder, which is replaced on each run; "
                         f"choose a path outside it")
    owner = enclosing_output(real)  # another mhc output: a file mhc did not write there blocks its reruns
    if owner == real:
        raise UsageError(f"{label} is an mhc output folder, not a file; give a file path outside "
                         f"every output (mhc pairs, report and cache find the one an output used with "
                         f"-o {path})")
    if owner is not None:
        raise UsageError(f"{label} is inside the mhc output folder {owner}; a file there would stop "
                         f"mhc from writing that output again (it replaces only what it made). Choose a path "
                         f"outside it")
    if real.is_dir():
        raise UsageError(f"{label} is a folder; give a file path, e.g. {Path(path) / 'mhc-cache.sqlite'}")
    for parent in real.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{label}: {parent} is a file, not a folder; "
                                 + ("set XDG_CACHE_HOME to a folder, or pass --cache FILE" if default
                                    else "choose another path"))
            break
    if real.exists():
        _check_readable(real, label, "choose another path, or --no-cache" if run else "choose another path")
    if real.exists() and not owned_cache(real):
        kind = "an SQLite database of another program" if _is_sqlite(real) else "not an mhc cache"
        raise UsageError(f"{label} is {kind}; mhc will not touch it. Choose another path (or, if it is a "
                         f"damaged mhc cache, delete it yourself)")


def _check_readable(path: Path, label: str, then: str) -> None:
    """A cache that cannot be read is not "not an mhc cache" (which tells the user to
    delete it): said as what it is, unreadable, and why."""
    try:
        with open(path, "rb") as f:
            f.read(100)
    except PermissionError:
        raise UsageError(f"{label} cannot be read (permission denied); {then}") from None
    except OSError as e:
        failing = f"; {CACHE_DISK_FAILING}" if e.errno == errno.EIO else ""
        why = f"{e.strerror or e}{failing}"
        raise EnvironmentFault(f"{label} cannot be read ({why}); {then}") from None


def _is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(16) == SQLITE_MAGIC
    except OSError:
        return False
