#!/usr/bin/env python3
"""Pair search + sweep at scale, on synthetic hashes with planted near-duplicate groups.

    python benchmarks/sweep.py --n 100000 --bits 64 --max-threshold 19 [--step 1] [--method auto]

Random codes (unrelated pictures) plus groups of 2-8 copies of a seed with a few bits
flipped (near-duplicates), 10 % of the files. Prints wall time of the pair search
(streamed into a minimum spanning forest) and of the sweep, peak memory (max RSS of the
process), and pairs/s against a baseline measured in the same run: plain numpy all-pairs
popcount on one core, timed on the first min(n, 20,000) rows. For n <= 3,000 the
partitions are checked against a brute-force all-pairs graph (networkx).
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mhc.pairs import choose_method, distances, iter_pairs  # noqa: E402
from mhc.sweep import spanning_forest, sweep  # noqa: E402


def synthetic(n: int, bits: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    words = bits // 64
    codes = rng.integers(0, 2**63, (n, words), dtype=np.uint64) | (rng.integers(0, 2, (n, words), dtype=np.uint64) << 63)
    k = 0
    planted = int(n * 0.1)
    while k < planted:
        size = int(rng.integers(2, 9))
        src = int(rng.integers(0, n))
        for _ in range(size):
            dst = int(rng.integers(0, n))
            c = codes[src].copy()
            for _ in range(int(rng.integers(0, max(1, bits // 16)))):
                w = int(rng.integers(0, words))
                c[w] ^= np.uint64(1) << np.uint64(int(rng.integers(0, 64)))
            codes[dst] = c
            k += 1
    return codes


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--bits", type=int, default=64, choices=[64, 128, 256, 512, 1024])
    ap.add_argument("--max-threshold", type=int, default=19)
    ap.add_argument("--step", type=int, default=1)
    ap.add_argument("--method", default="auto", choices=["auto", "numpy", "faiss", "multihash"])
    args = ap.parse_args()
    n, t = args.n, args.max_threshold
    codes = synthetic(n, args.bits)
    base_rss = rss_mb()
    method = choose_method(n, args.bits, t) if args.method == "auto" else args.method
    print(f"n={n:,} bits={args.bits} thresholds 0..{t} step {args.step}; method {method}; "
          f"codes {codes.nbytes / 1e6:.0f} MB, RSS before {base_rss:.0f} MB")

    # baseline: numpy all-pairs popcount on one core, first rows only
    m = min(n, 20_000)
    t0 = time.perf_counter()
    for s in range(0, m, 2000):
        (distances(codes[:m], slice(s, min(m, s + 2000)), slice(0, m)) <= t).sum()
    base_rate = m * m / (time.perf_counter() - t0)

    edges = [0]

    def counted(blocks):
        for b in blocks:
            edges[0] += len(b)
            yield b

    t0 = time.perf_counter()
    forest = spanning_forest(n, counted(iter_pairs(codes, t, method=method)))
    t_pairs = time.perf_counter() - t0
    thresholds = list(range(0, t + 1, args.step))
    t0 = time.perf_counter()
    parts = [(p.threshold, len(p.clusters), p.clustered_files, p.largest) for p in sweep(n, forest, thresholds)]
    t_sweep = time.perf_counter() - t0
    pairs = n * (n - 1) / 2
    rate = pairs / t_pairs
    print(f"pairs within {t}: {edges[0]:,} (never held at once); spanning forest: {len(forest):,} edges")
    print(f"pair search + forest {t_pairs:8.1f} s   {rate / 1e9:6.2f} Gpairs/s   "
          f"baseline numpy 1 core {base_rate / 1e9:5.2f} Gpairs/s   ratio {rate / base_rate:5.1f}x")
    print(f"sweep ({len(thresholds)} thresholds)  {t_sweep:8.1f} s")
    print(f"total                {t_pairs + t_sweep:8.1f} s   peak RSS {rss_mb():.0f} MB")
    for th, c, f, big in parts[:: max(1, len(parts) // 5)] + [parts[-1]]:
        print(f"  threshold {th:3d}: {c:,} clusters, {f:,} files in clusters, largest {big:,}")
    if n <= 3000:
        import networkx as nx

        bitsm = np.unpackbits(codes.view(np.uint8), axis=1)
        d = (bitsm[:, None, :] != bitsm[None, :, :]).sum(axis=2)
        for p in sweep(n, forest, thresholds):
            g = nx.Graph()
            ii, jj = np.nonzero(np.triu(d <= p.threshold, 1))
            g.add_edges_from(zip(ii.tolist(), jj.tolist()))
            ref = sorted(sorted(c) for c in nx.connected_components(g))
            got = sorted(sorted(int(i) for i in c) for c in p.clusters)
            assert got == ref, f"partition differs from brute force at threshold {p.threshold}"
        print("partitions equal the brute-force all-pairs graph at every threshold")


if __name__ == "__main__":
    main()
