#!/usr/bin/env python3
"""Hashing speed and fidelity: mhc against the naive way, in one run on one machine.

    python benchmarks/hashing.py --photos /tmp/corpus [--n 48] [--workers 2] [--rerun-files 1000]

From up to N real photos under --photos (e.g. a corpus built by ../shared/corpus/make_corpus.py)
it makes 12 MP JPEGs (4000x3000, with sensor-like grain so they compress like camera files),
then times, with the same number of processes each:

  naive        for each algorithm: Image.open + imagehash (what image-clustering does)
  decode-only  mhc's decoder alone (the floor: pixels must be read once)
  mhc cold     mhc.compute_hashes with an empty cache
  mhc warm     the same again, every hash from the cache

and prints files/s and the ratios; then a whole cold `./cluster.py` (start-up, hashing,
writing every threshold folder, the report) against the decode floor and the naive way. It
also reports how far mhc's fast (draft-decoded)
hashes are from imagehash on the full-resolution image, in mean Hamming bits per
algorithm, on the photos themselves (not the upscaled copies); and, with --rerun-files,
the wall time of a whole warm `mhc` rerun over that many files.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mhc import HashCache, HashPlan, compute_hashes, discover, parse_algorithms  # noqa: E402
from mhc.decode import DecodeSettings, open_image  # noqa: E402
from mhc.hashing import hash_file  # noqa: E402


def source_photos(root: Path, n: int) -> list[Path]:
    labels = root / "labels.json"
    if labels.exists():  # a make_corpus.py corpus: originals and distractors are distinct photos
        files = json.loads(labels.read_text())["files"]
        picks = sorted(root / f for f, v in files.items() if v["transform"] in ("original", "distractor"))
    else:
        picks = [f.path for f in discover(root).files]
        picks = [Path(p) for p in picks]
    return picks


def make_12mp(src: Path, dst: Path, seed: int) -> None:
    im = Image.open(src).convert("RGB").resize((4000, 3000), Image.BICUBIC)
    a = np.asarray(im, dtype=np.int16)
    a = a + np.random.default_rng(seed).normal(0, 6, a.shape).astype(np.int16)
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(dst, quality=90)


def naive_one(args: tuple[str, list[str]]) -> list[str]:
    import imagehash

    path, keys = args
    funcs = {"phash": imagehash.phash, "ahash": imagehash.average_hash, "dhash": imagehash.dhash,
             "whash": imagehash.whash, "colorhash": None, "dhash_vertical": imagehash.dhash_vertical}
    out = []
    for key in keys:
        name, size = key.rsplit("_", 1)
        with Image.open(path) as im:  # opened once per algorithm, as image-clustering does
            if name == "colorhash":
                out.append(str(imagehash.colorhash(im, binbits=int(size))))
            else:
                out.append(str(funcs[name](im, hash_size=int(size))))
    return out


def decode_one(args: tuple[str, DecodeSettings]) -> int:
    path, settings = args
    return open_image(path, settings).size[0]


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def fidelity(photos: list[Path], algos) -> dict[str, float]:
    """Mean Hamming bits between mhc's fast hashes and imagehash on the full image."""
    fast = HashPlan.build(algos)
    exact = HashPlan.build(algos, exact=True)
    diffs: dict[str, list[int]] = {a.key: [] for a in algos}
    for p in photos:
        rf, re_ = hash_file(str(p), fast), hash_file(str(p), exact)
        if rf.error or re_.error:
            continue
        for a in algos:
            x = np.frombuffer(rf.values[fast.hkey(a)], np.uint8) ^ np.frombuffer(re_.values[exact.hkey(a)], np.uint8)
            diffs[a.key].append(int(np.unpackbits(x).sum()))
    return {k: statistics.mean(v) for k, v in diffs.items() if v}


def warm_rerun(photos: list[Path], n: int, tmp: Path) -> tuple[float, float]:
    """Wall time of a cold and a warm `./cluster.py` over n files (small JPEGs from the photos)."""
    inp = tmp / "rerun-in"
    inp.mkdir()
    thumbs = []
    for p in photos:
        im = Image.open(p).convert("RGB")
        im.thumbnail((640, 640))
        thumbs.append(im)
    for k in range(n):
        sub = inp / f"{k // 100:02d}"
        sub.mkdir(exist_ok=True)
        thumbs[k % len(thumbs)].save(sub / f"img_{k:05d}.jpg", quality=85 - k // len(thumbs) % 20)
    cmd = [sys.executable, str(Path(__file__).resolve().parent.parent / "cluster.py"), "-q", "-i", str(inp), "-o", str(tmp / "rerun-out")]
    cold = timed(lambda: subprocess.run(cmd, check=True))
    warm = timed(lambda: subprocess.run(cmd, check=True))
    return cold, warm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, required=True, help="folder of real photos (e.g. a make_corpus.py corpus)")
    ap.add_argument("--n", type=int, default=48, help="12 MP JPEGs to make (default 48)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("-a", "--algo", action="append", help="algorithms (default: mhc's default set)")
    ap.add_argument("--rerun-files", type=int, default=1000, help="files for the whole-rerun timing (0: skip)")
    args = ap.parse_args()

    algos = parse_algorithms(args.algo)
    keys = [a.key for a in algos]
    photos = source_photos(args.photos, args.n)[: args.n]
    if not photos:
        sys.exit(f"no photos under {args.photos}")
    with tempfile.TemporaryDirectory(prefix="mhc-bench-") as td:
        tmp = Path(td)
        big = tmp / "12mp"
        big.mkdir()
        # more JPEGs than photos: cycle through them (each copy gets its own grain)
        t = timed(lambda: [make_12mp(photos[i % len(photos)], big / f"photo_{i:03d}.jpg", i) for i in range(args.n)])
        files = discover(big).files
        mb = sum(f.size for f in files) / len(files) / 1e6
        print(f"{len(files)} JPEGs of 4000x3000 ({mb:.1f} MB each) made in {t:.1f} s; "
              f"algorithms {' '.join(keys)}; {args.workers} processes")
        paths = [f.path for f in files]
        plan = HashPlan.build(algos)
        with ProcessPoolExecutor(args.workers) as ex:
            list(ex.map(decode_one, [(paths[0], plan.decode)] * args.workers))  # warm the workers up
            t_naive = timed(lambda: list(ex.map(naive_one, [(p, keys) for p in paths])))
            t_decode = timed(lambda: list(ex.map(decode_one, [(p, plan.decode) for p in paths])))
            # mhc runs on the same warmed-up pool, so process start-up is not counted for anyone
            cache = HashCache(tmp / "cache.sqlite")
            t_cold = timed(lambda: compute_hashes(files, plan, cache, workers=args.workers, executor=ex))
            res_warm = []
            t_warm = timed(lambda: res_warm.append(compute_hashes(files, plan, cache, workers=args.workers, executor=ex)))
        assert res_warm[0].stats.decoded == 0
        n = len(files)
        rows = [("naive (open + imagehash per algorithm)", t_naive), ("decode-only (mhc decoder, the floor)", t_decode),
                ("mhc cold", t_cold), ("mhc warm (cache)", t_warm)]
        print(f"\n{'':42s} {'files/s':>10s} {'seconds':>9s}")
        for name, s in rows:
            print(f"{name:42s} {n / s:10.1f} {s:9.2f}")
        print(f"\nmhc cold vs naive:        {t_naive / t_cold:6.1f}x faster   (target >= 20x)")
        print(f"mhc cold vs decode-only:  {t_cold / t_decode:6.2f}x the time (target <= 1.3x)")
        print(f"mhc warm vs cold:         {t_cold / t_warm:6.0f}x faster")

        # the whole command a user waits for: start-up, hashing, the tree, the report
        # three cold runs, each into a new output with a new cache (nothing deleted between
        # them: on some filesystems a deletion slows the next creations for minutes); the median
        runs = []
        for k in range(3):
            e2e_cmd = [sys.executable, str(Path(__file__).resolve().parent.parent / "cluster.py"), "-i", str(big),
                       "-o", str(tmp / f"e2e-out{k}"), "--cache", str(tmp / f"e2e{k}.sqlite"), "-j", str(args.workers),
                       "-q"]
            for a in keys:
                e2e_cmd += ["-a", a]
            time.sleep(2)
            runs.append(timed(lambda: subprocess.run(e2e_cmd, check=True)))
        t_e2e = sorted(runs)[1]
        print(f"\nwhole cold ./cluster.py (report included), median of {', '.join(f'{r:.2f}' for r in runs)} s: "
              f"{t_e2e:.2f} s = {t_e2e / t_decode:.2f}x the decode floor (target <= 2x), "
              f"{t_naive / t_e2e:.1f}x faster than naive (target >= 10x)")

        fid = fidelity(photos, algos)
        print("\nfast decoder vs imagehash on the full-resolution photo, mean Hamming bits "
              "(target <= 1 for 64-bit, <= 2 for 256-bit):")
        for a in algos:
            print(f"  {a.key:10s} {a.bits:4d} bits  {fid.get(a.key, float('nan')):.2f}")

        if args.rerun_files:
            cold, warm = warm_rerun(photos, args.rerun_files, tmp)
            print(f"\nwhole ./cluster.py run over {args.rerun_files} files: cold {cold:.2f} s, "
                  f"warm rerun {warm:.2f} s (target < 3 s)")


if __name__ == "__main__":
    main()
