#!/usr/bin/env python3
"""Hashing speed by container: camera JPEGs with an embedded preview (Pillow's MPO) and JPEG
2000 against plain JPEGs of the same pictures, in one run on one machine.

    python benchmarks/formats.py [--photos data/images] [--n 12]

From up to N photos under --photos it makes 12 MP pictures (4000 px on the long side, with
sensor-like grain) three ways: a plain JPEG, the same JPEG with a 1920 px preview after it (as
cameras and phones write them; Pillow opens them as MPO), and a lossy JPEG 2000 (openjpeg's
default of 6 resolution levels). Then it hashes each set with mhc's default algorithms in
this process, and the JPEG 2000s once more at full size (what decoding them without their
resolution pyramid costs). Target: a JPEG with a preview hashes within 1.25x the time of the
plain one (the same decode), a JPEG 2000 within 5x (openjpeg is slower than libjpeg at any
scale; at full size it takes 30-40x).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mhc import HashPlan, discover, parse_algorithms  # noqa: E402
from mhc.hashing import hash_file  # noqa: E402

DEFAULT = ["phash_8", "ahash_8", "dhash_8", "whash_8", "phash_16"]


def make(src: Path, out: Path, i: int) -> tuple[Path, Path, Path]:
    im = Image.open(src).convert("RGB")
    k = 4000 / max(im.size)
    im = im.resize((round(im.width * k), round(im.height * k)), Image.BICUBIC)
    a = np.asarray(im, dtype=np.int16) + np.random.default_rng(i).normal(0, 6, (im.height, im.width, 3)).astype(np.int16)
    im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    plain, camera, jp2 = out / f"plain_{i:03d}.jpg", out / f"camera_{i:03d}.jpg", out / f"scan_{i:03d}.jp2"
    im.save(plain, quality=90)
    im.save(camera, format="MPO", save_all=True, append_images=[im.resize((1920, round(1920 * im.height / im.width)))],
            quality=90)
    im.save(jp2, quality_mode="rates", quality_layers=[20])
    return plain, camera, jp2


def timed(files: list[Path], plan: HashPlan) -> float:
    t = time.perf_counter()
    for f in files:
        r = hash_file(str(f), plan)
        assert r.error is None, (f, r.error)
    return (time.perf_counter() - t) / len(files)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, default=Path("data/images"))
    ap.add_argument("--n", type=int, default=12)
    args = ap.parse_args()
    photos = [Path(f.path) for f in discover(args.photos).files if f.kind == "image"][: args.n]
    plan = HashPlan.build(parse_algorithms(DEFAULT))
    full = HashPlan.build(parse_algorithms(DEFAULT), exact=True)
    with tempfile.TemporaryDirectory() as tmp:
        sets = list(zip(*(make(p, Path(tmp), i) for i, p in enumerate(photos))))
        assert Image.open(sets[1][0]).format == "MPO"
        timed(list(sets[0][:2]), plan)  # warm: imports, first-call set-ups
        plain, camera, jp2 = (timed(list(s), plan) for s in sets)
        jp2_full = timed(list(sets[2]), full)
    print(f"{len(photos)} pictures of 12 MP, {', '.join(DEFAULT)}, one process")
    print(f"  plain JPEG          {plain * 1000:7.1f} ms/file")
    print(f"  JPEG with preview   {camera * 1000:7.1f} ms/file  {camera / plain:5.2f}x plain  (target <= 1.25x)")
    print(f"  JPEG 2000           {jp2 * 1000:7.1f} ms/file  {jp2 / plain:5.2f}x plain  (target <= 5x)")
    print(f"  JPEG 2000 full size {jp2_full * 1000:7.1f} ms/file  {jp2_full / plain:5.2f}x plain  (not reduced)")
    ok = camera / plain <= 1.25 and jp2 / plain <= 5
    print("targets met" if ok else "TARGET MISSED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
