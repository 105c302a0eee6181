#!/usr/bin/env python3
"""Whole runs (`./cluster.py`) at 100,000 and 1,000,000 files, hashes cached.

    python benchmarks/scale.py --n 100000 --dir /tmp/scale100k
    python benchmarks/scale.py --n 1000000 --dir /tmp/scale1m --no-unclustered-links --skip-new-file

Makes ``n`` small real PNG files (8x8, each distinct) and puts *synthetic* phash_8 hashes
for them in a fresh cache through mhc's own cache API (random codes plus 10 % planted
near-duplicate groups, as benchmarks/sweep.py), so the runs measure everything after
hashing: discovery, the cache lookup, pair search, the sweep, the summary, the links, the
report. Then it times, each as a separate `./cluster.py -a phash_8` process with peak
memory (of the run's whole process tree, sampled):

1. the first run into a new output (every folder and link written),
2. a warm rerun (same hashes: partitions unchanged),
3. a rerun after adding one new real photo (one file decoded; the partitions change).

With ``--crops`` the cache also gets synthetic crop features (the whole-picture window is the
file's hash, 27 random windows, thumbnails from a pool of 500 real ones) and every run has
``--crops``: issue 18's "100,000 files within the memory target".

Targets (issue 17): at 100,000 files the warm rerun <= 5 s and the one-new-file rerun
<= 10 s, peak <= 1.5 GB; at 1,000,000 with --no-unclustered-links the warm rerun <= 5 min
and <= 4 GB.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sweep import synthetic  # noqa: E402

from mhc import Options  # noqa: E402
from mhc.cache import HashCache  # noqa: E402
from mhc.collection import find_media, hash_plan  # noqa: E402
from mhc.identity import FileInfo  # noqa: E402
from mhc.options import validate  # noqa: E402


def make_files(folder: Path, n: int) -> None:
    """n distinct 8x8 PNGs in folders of 1,000 (as photo libraries are split)."""
    from PIL import Image

    have = sum(len(files) for _, _, files in os.walk(folder)) if folder.exists() else 0
    if have == n:
        return
    rng = np.random.default_rng(1)
    for k in range(n):
        d = folder / f"{k // 1000:04d}"
        if k % 1000 == 0:
            d.mkdir(parents=True, exist_ok=True)
        p = d / f"img_{k:07d}.png"
        if not p.exists():
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), "L").save(p)


def crop_pool(k: int = 500) -> list[bytes]:
    """The thumbnail part of ``k`` real crop-feature blobs (photo-like pictures of 640x360)."""
    import struct

    from PIL import Image

    from mhc import crops

    rng = np.random.default_rng(5)
    pool = []
    head = 1 + 8 * crops.WINDOWS
    for _ in range(k):
        coarse = Image.fromarray((rng.random((5, 9, 3)) * 255).astype(np.uint8), "RGB").resize((640, 360), Image.BICUBIC)
        fine = rng.normal(0, 12, (360, 640, 3))
        im = Image.fromarray(np.clip(np.asarray(coarse, dtype=np.float32) + fine, 0, 255).astype(np.uint8))
        blob = crops.features(im)
        pool.append(blob[head:])
        assert struct.unpack_from("<II", blob, head)  # the layout this benchmark assumes
    return pool


def fill_cache(folder: Path, cache: Path, output: Path, with_crops: bool = False) -> int:
    plan = validate(Options(input=folder, output=output, cache=cache, algorithms=["phash_8"], crops=with_crops))
    found = find_media(plan)
    hp = hash_plan(plan)
    algo = hp.algorithms[0]
    codes = synthetic(len(found.files), 64, seed=7)
    if with_crops:
        from mhc import crops

        pool = crop_pool()
        rng = np.random.default_rng(9)
    with HashCache(cache) as c:
        rows = []
        for k, (f, code) in enumerate(zip(found.files, codes)):
            values = {hp.hkey(algo): code.byteswap().tobytes()}
            if with_crops:
                # the whole-picture window is the file's synthetic hash (planted groups stay near),
                # the other windows random; thumbnails from a pool of real ones
                win = rng.integers(0, 2**63, crops.WINDOWS, dtype=np.uint64)
                win[0] = code.view(np.uint64)[0]
                values[hp.crop_key()] = bytes([crops.VERSION]) + win.tobytes() + pool[k % len(pool)]
            rows.append((f, FileInfo(8, 8, "PNG", None, None), values, None))
            if len(rows) == 50_000:
                c.store(rows)
                rows = []
        c.store(rows)
    return len(found.files)


def _tree_memory(root: int) -> int:
    """Bytes of memory of process ``root`` and its descendants (Linux /proc): the sum of
    each one's proportional set size, so pages a forked child shares with its parent count
    once. ``ru_maxrss`` gives only the largest single process, which misses the forked link
    maker and the hashing pool beside their parent."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(d))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
        except (OSError, StopIteration, ValueError):
            pass  # gone meanwhile
        todo += children.get(pid, [])
    return total


def timed_run(args: list[str]) -> tuple[float, float, str]:
    """Wall seconds, the peak memory of the run's process tree in MB (sampled every 0.1 s,
    see :func:`_tree_memory`), and its stdout."""
    t = time.perf_counter()
    p = subprocess.Popen([sys.executable, str(ROOT / "cluster.py"), *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    peak = 0
    while p.poll() is None:
        peak = max(peak, _tree_memory(p.pid))
        time.sleep(0.1)
    stdout, stderr = p.communicate()
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"run failed ({p.returncode}): {stderr.strip()[-2000:]}")
    return wall, peak / 2**20, stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/mhc-scale"))
    ap.add_argument("--no-unclustered-links", action="store_true")
    ap.add_argument("--no-report", action="store_true")
    ap.add_argument("--skip-new-file", action="store_true")
    ap.add_argument("--crops", action="store_true", help="also synthetic crop features, runs with --crops")
    args = ap.parse_args()
    folder, out, cache = args.dir / "media", args.dir / "out", args.dir / "cache.sqlite"
    t = time.perf_counter()
    make_files(folder, args.n)
    print(f"{args.n:,} files ready in {folder} ({time.perf_counter() - t:.0f} s)")
    if not cache.exists():
        t = time.perf_counter()
        k = fill_cache(folder, cache, out, args.crops)
        print(f"synthetic phash_8 hashes for {k:,} files cached ({time.perf_counter() - t:.0f} s)")
    new = folder / "new_photo.jpg"
    new.unlink(missing_ok=True)
    common = ["-i", str(folder), "-o", str(out), "--cache", str(cache), "-a", "phash_8", "-q"]
    common += ["--no-unclustered-links"] if args.no_unclustered_links else []
    common += ["--no-report"] if args.no_report else []
    common += ["--crops"] if args.crops else []
    if not out.exists():
        wall, peak, _ = timed_run(common)
        print(f"first run into a new output: {wall:.1f} s, peak {peak:.0f} MB")
    wall, peak, _ = timed_run(common)
    print(f"warm rerun: {wall:.1f} s, peak {peak:.0f} MB")
    wall, peak, _ = timed_run(common)
    print(f"warm rerun again: {wall:.1f} s")
    if not args.skip_new_file:
        from PIL import Image

        # a picture never seen before (its hash is new, so no cached spanning forest applies)
        seed = np.random.default_rng(time.time_ns()).random(4)
        box = (-2 + seed[0], -1.2 + seed[1], 1 - seed[2] / 2, 1.2 - seed[3] / 2)
        Image.effect_mandelbrot((1600, 1200), box, 100).convert("RGB").save(new, quality=90)
        wall, peak, _ = timed_run(common)
        print(f"rerun with one new file: {wall:.1f} s, peak {peak:.0f} MB")
        new.unlink()


if __name__ == "__main__":
    main()
