#!/usr/bin/env python3
"""Large hashes end to end: ``-a phash_32`` (1024 bits) on many files, cold and warm.

    python benchmarks/large_hashes.py --photos /tmp/corpus40 [--n 10000] [-a phash_32] [--keep DIR]

Makes N JPEGs (640 px, random windows of the corpus photos at random scales, so most are
distinct pictures and some overlap), then runs mhc in this process twice (cold: empty cache
and output; warm: everything cached and written) and prints the wall time of each stage
(from mhc's progress events), the pairs within the loosest threshold, the size of
summary.json and the peak memory (max RSS of this process).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mhc import Options, run  # noqa: E402


def make_images(photos: list[Path], n: int, out: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    srcs = [Image.open(p).convert("RGB") for p in photos]
    for k in range(n):
        im = srcs[int(rng.integers(len(srcs)))]
        w, h = im.size
        f = float(rng.uniform(0.3, 0.9))
        cw, ch = int(w * f), int(h * f)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = im.crop((x, y, x + cw, y + ch))
        crop.thumbnail((640, 640))
        sub = out / f"{k // 500:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        crop.save(sub / f"img_{k:06d}.jpg", quality=int(rng.integers(70, 95)))


class Stages:
    def __init__(self):
        self.t = {}
        self.cur = None
        self.start = time.perf_counter()

    def __call__(self, e) -> None:
        now = time.perf_counter()
        key = e.stage
        if key != self.cur:
            if self.cur:
                self.t[self.cur] = self.t.get(self.cur, 0) + now - self.start
            self.cur, self.start = key, now

    def close(self) -> dict:
        if self.cur:
            self.t[self.cur] = self.t.get(self.cur, 0) + time.perf_counter() - self.start
        return {k: round(v, 2) for k, v in self.t.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, required=True)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("-a", "--algo", action="append")
    ap.add_argument("--keep", type=Path, help="make the images here (and reuse them if present)")
    args = ap.parse_args()
    labels = args.photos / "labels.json"
    photos = sorted(args.photos / f for f, v in json.loads(labels.read_text())["files"].items()
                    if v["transform"] in ("original", "distractor"))
    with tempfile.TemporaryDirectory(prefix="mhc-large-") as td:
        root = args.keep or Path(td)
        inp = root / "in"
        if not inp.exists():
            t = time.perf_counter()
            make_images(photos, args.n, inp)
            print(f"made {args.n} JPEGs in {time.perf_counter() - t:.0f} s")
        os.environ["XDG_CACHE_HOME"] = str(Path(td) / "xdg")
        opts = Options(input=inp, output=Path(td) / "out", algorithms=args.algo or ["phash_32"])
        for name in ("cold", "warm"):
            stages = Stages()
            t = time.perf_counter()
            res = run(opts, progress=stages, background_cleanup=False)
            total = time.perf_counter() - t
            a = res.algorithms[0]
            top = a.partitions[-1]
            print(f"{name}: {total:.1f} s total; stages {stages.close()}; {len(res.files)} files, thresholds "
                  f"{a.thresholds[0]}..{a.thresholds[-1]} step {a.thresholds[1] - a.thresholds[0]}, "
                  f"{len(a.joins)} joins, largest cluster at the top {top.largest}; summary.json "
                  f"{(Path(td) / 'out' / 'summary.json').stat().st_size / 1e6:.1f} MB; peak RSS "
                  f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
