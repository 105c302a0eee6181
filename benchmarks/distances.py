#!/usr/bin/env python3
"""How far apart copies, look-alikes and strangers are, per algorithm and hash size.

    python benchmarks/distances.py --corpus /tmp/corpus [-a phash_8 -a phash_32 ...] [--json out.json]

For a labelled corpus made by ../shared/corpus/make_corpus.py it hashes every file (through
mhc's cache) and prints, as a percentage of the hash's bits:

  copies     pairs of the same group without the hard edits (crops, mirrors, rotations):
             the 50th, 90th, 95th percentile and the largest
  hard       pairs of the same group where one is a hard edit: median
  related    look-alike pictures of different groups: smallest and 5th percentile
  strangers  pairs of different groups, not related: smallest, 1st, 5th percentile, median

The gap between the copies' 95th percentile and the strangers' 1st is where a good
threshold lies; a loose ("vibe") threshold reaches toward the strangers' 5th percentile.
With ``--rates 2,5,8,12`` it also prints, per threshold (percent of the bits), the share of
each kind of pair that would link: how much of the "vibe" (look-alikes) a threshold gathers
and how many strangers come with it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mhc import hash_folder  # noqa: E402
from mhc.pairs import cross_distances  # noqa: E402

DEFAULT = ["ahash_8", "dhash_8", "phash_8", "whash_8", "phash_12", "dhash_12", "phash_16", "dhash_16", "ahash_16",
           "whash_16", "phash_20", "phash_24", "phash_32", "dhash_32", "ahash_32", "whash_32"]


def pair_classes(corpus: Path, files: list[str]):
    labels = json.loads((corpus / "labels.json").read_text())
    info = labels["files"]
    rel = {f: name for name, r in labels.get("related", {}).items() for f in r["files"]}
    meta = []
    for p in files:
        key = str(Path(p).relative_to(corpus))
        v = info.get(key)
        meta.append(None if v is None else (v["group"], v.get("difficulty"), rel.get(key)))
    n = len(files)
    iu, ju = np.triu_indices(n, k=1)
    kind = np.full(len(iu), "", dtype=object)
    for k, (i, j) in enumerate(zip(iu, ju)):
        a, b = meta[i], meta[j]
        if a is None or b is None:
            continue
        if a[0] is not None and a[0] == b[0]:
            kind[k] = "hard" if "hard" in (a[1], b[1]) else "copies"
        elif a[2] is not None and a[2] == b[2]:
            kind[k] = "related"
        else:
            kind[k] = "strangers"
    return iu, ju, kind


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("-a", "--algo", action="append")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    ap.add_argument("--rates", help="comma-separated percentages of the bits: share of pairs within each")
    args = ap.parse_args()
    algos = args.algo or DEFAULT
    col = hash_folder(args.corpus, algos)
    iu, ju, kind = pair_classes(args.corpus, col.files)
    rows = {}
    print(f"{len(col.files)} files; percent of the hash's bits")
    print(f"{'algorithm':10s} {'bits':>5s} | copies p50  p90  p95  max | hard p50 | related min p5 | "
          f"strangers min  p1   p5  p50")
    for key in algos:
        c = col.codes(key)
        d = cross_distances(c.codes, c.codes)[iu, ju].astype(float) * 100 / c.algorithm.bits
        pct = {k: d[kind == k] for k in ("copies", "hard", "related", "strangers")}

        def q(k: str, p: float) -> float:
            return float(np.percentile(pct[k], p)) if len(pct[k]) else float("nan")

        r = {"bits": c.algorithm.bits, "copies": [q("copies", p) for p in (50, 90, 95, 100)],
             "hard": q("hard", 50), "related": [q("related", 0), q("related", 5)],
             "strangers": [q("strangers", p) for p in (0, 1, 5, 50)]}
        rows[key] = r
        print(f"{key:10s} {r['bits']:5d} | {'':6s}" + " ".join(f"{x:4.1f}" for x in r["copies"])
              + f" | {r['hard']:8.1f} | {r['related'][0]:8.1f} {r['related'][1]:4.1f} | {'':9s}"
              + " ".join(f"{x:4.1f}" for x in r["strangers"]))
        if args.rates:
            for t in (float(x) for x in args.rates.split(",")):
                share = {k: 100 * float(np.mean(v <= t)) if len(v) else float("nan") for k, v in pct.items()}
                r.setdefault("rates", {})[t] = share
    if args.rates:
        print("\nshare of pairs linked (percent) at thresholds given as percent of the bits")
        print(f"{'algorithm':10s} {'thr %':>6s} {'copies':>7s} {'hard':>6s} {'related':>8s} {'strangers':>10s}")
        for key, r in rows.items():
            for t, sh in r["rates"].items():
                print(f"{key:10s} {t:6.1f} {sh['copies']:7.1f} {sh['hard']:6.1f} {sh['related']:8.1f} "
                      f"{sh['strangers']:10.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
