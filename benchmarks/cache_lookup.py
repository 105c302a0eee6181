"""The cache's read of a warm rerun: HashCache.lookup of N files with the default five
algorithms' keys, best of 5, against a floor measured in the same run (the same rows read
by one plain SELECT with nothing done per row), so two checkouts can be compared:

    python benchmarks/cache_lookup.py [--files 100000] [--root OTHER_CHECKOUT]

--root: import mhc from another checkout (e.g. a `git worktree` of an older commit).
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    args = ap.parse_args()
    sys.path.insert(0, str(args.root))
    from mhc.algorithms import parse_algorithms
    from mhc.cache import HashCache
    from mhc.discover import MediaFile
    from mhc.hashing import HashPlan
    from mhc.identity import FileInfo

    plan = HashPlan.build(parse_algorithms(None))
    n = args.files
    files = [MediaFile(f"/x/{i:07d}.jpg", "image", 1000 + i, 10**18 + i, 1, i + 1, 10**18 + i) for i in range(n)]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "c.sqlite")
        with HashCache(path) as c:
            c.store([(f, FileInfo(100, 100, "JPEG", None, b"s" * 16),
                      {plan.hkey(a): os.urandom(a.nbytes if hasattr(a, "nbytes") else a.bits // 8)
                       for a in plan.algorithms}, None) for f in files])
        keys = plan.keys("image")
        kw = {"fits": plan.fits("image")} if hasattr(plan, "fits") else {}
        best, floor = float("inf"), float("inf")
        for _ in range(5):
            with HashCache(path) as c:
                t = time.perf_counter()
                got = c.lookup(files, keys, [plan.dkey()], **kw)
                best = min(best, time.perf_counter() - t)
            db = sqlite3.connect(path)
            t = time.perf_counter()
            for _ in db.execute("SELECT path, dev, ino, size, mtime_ns, ctime_ns, sample, width, height, format, "
                                "taken FROM files"):
                pass
            for _ in db.execute("SELECT path, hkey, value FROM hashes"):
                pass
            floor = min(floor, time.perf_counter() - t)
            db.close()
        assert len(got.values) == n
    print(f"{args.root}: lookup of {n:,} files x {len(keys)} keys {best:.3f} s; plain read of the rows {floor:.3f} s; "
          f"ratio {best / floor:.2f}")


if __name__ == "__main__":
    main()
