#!/usr/bin/env python3
"""PDQ (pdq_16): the fast decoder against the reference's full-resolution input, and cost.

    python benchmarks/pdq.py --photos /tmp/corpus40 [--n 200]

For each photo: the hash from mhc's fast decode (a JPEG draft keeping 512 px on the short
side) and from the full-resolution decode (what Meta's reference sees: bit-exact there, see
tests/test_pdq.py), their distance in bits, and the time of each; then the same timings for
phash_16 (imagehash) for scale. Meta's bar for a PDQ implementation: hashes of quality >= 80
within 10 bits of the reference's.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mhc.algorithms import parse_algorithm  # noqa: E402
from mhc.decode import DecodeError, DecodeSettings, decode  # noqa: E402
from mhc.pdq import MIN_QUALITY, pdq_hash  # noqa: E402


def bits(a: bytes, b: bytes) -> int:
    return int(np.unpackbits(np.frombuffer(a, np.uint8) ^ np.frombuffer(b, np.uint8)).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, required=True)
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    files = sorted(p for p in args.photos.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:args.n]
    pdq = parse_algorithm("pdq_16")
    fast_s = DecodeSettings(min_side=pdq.min_side, color=True)
    full_s = DecodeSettings(min_side=0, color=True)
    diffs, qualities, t_fast, t_full, t_phash = [], [], 0.0, 0.0, 0.0
    phash = parse_algorithm("phash_16")
    for f in files:
        try:
            decode(str(f), fast_s)
        except DecodeError:
            continue  # the corpora hold broken files on purpose
        t = time.perf_counter()
        fast, q = pdq_hash(decode(str(f), fast_s).image)
        t_fast += time.perf_counter() - t
        t = time.perf_counter()
        full, _ = pdq_hash(decode(str(f), full_s).image)
        t_full += time.perf_counter() - t
        t = time.perf_counter()
        phash.hash_image(decode(str(f), DecodeSettings(min_side=phash.min_side)).image)
        t_phash += time.perf_counter() - t
        diffs.append(bits(fast, full))
        qualities.append(q)
    d, q = np.array(diffs), np.array(qualities)
    good = q >= 80
    n = len(d)
    print(f"{n} photos from {args.photos}; quality >= 80: {good.sum()}, below {MIN_QUALITY} (never linked): "
          f"{(q < MIN_QUALITY).sum()}, below 50 (Meta would discard): {(q < 50).sum()}")
    print(f"fast decode vs full resolution (the reference's input), bits apart, quality >= 80: "
          f"mean {d[good].mean():.2f}, median {np.median(d[good]):.0f}, p95 {np.percentile(d[good], 95):.0f}, "
          f"max {d[good].max()}; within 10 bits: {(d[good] <= 10).mean():.1%}")
    print(f"per file (decode + hash, one process): pdq_16 fast {t_fast / n * 1000:.1f} ms, "
          f"pdq_16 full resolution {t_full / n * 1000:.1f} ms, phash_16 fast {t_phash / n * 1000:.1f} ms")


if __name__ == "__main__":
    main()
