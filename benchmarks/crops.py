"""Crop matching (issue 18): quality and cost of --crops on labelled corpora.

    python benchmarks/crops.py --corpus /tmp/corpus --corpus /tmp/corpus40 [-a phash_8 -a pdq_16]

For each corpus: a cold run (empty cache) of the default algorithms with --isometric, with and
without --crops (the cost ratio; target <= 3x), then each algorithm's best threshold folder
scored by ../shared/corpus/score.py: overall F1 (hard edits included; target >= 0.97), look-alike
(hard-negative) merges (target: no more than without --crops) and the recall of the crop
transforms (target >= 0.9).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCORE = ROOT.parent / "shared" / "corpus" / "score.py"
CROPS = ("crop", "natural_aspect_crop", "natural_portrait_crop")


def run(corpus: Path, out: Path, cache: Path, extra: list[str], algos: list[str]) -> float:
    args = [sys.executable, str(ROOT / "cluster.py"), "-q", "-i", str(corpus), "-o", str(out), "--cache", str(cache),
            "--isometric", *extra] + [x for a in algos for x in ("-a", a)]
    t = time.perf_counter()
    subprocess.run(args, check=True)
    return time.perf_counter() - t


def best(out: Path, corpus: Path) -> dict[str, dict]:
    r = subprocess.run([sys.executable, str(SCORE), str(out), "--corpus", str(corpus), "--json"], check=True,
                       capture_output=True, text=True)
    found: dict[str, dict] = {}
    for f in json.loads(r.stdout)["thresholds"]:
        algo = f["folder"].split("/")[0]
        if algo not in found or f["f1"] > found[algo]["f1"]:
            found[algo] = f
    return found


def crop_recall(f: dict) -> str:
    rows = [p for p in f["per_transform"] if p["transform"] in CROPS]
    n = sum(p["n"] for p in rows)
    if not n:
        return "-"
    return f"{sum(p['pair_recall'] * p['n'] for p in rows) / n:.2f} ({n} files)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", action="append", type=Path, required=True)
    ap.add_argument("-a", "--algo", action="append", help="algorithms scored (default: mhc's default set)")
    a = ap.parse_args()
    algos = a.algo or []
    print("| corpus | algorithm | --isometric: F1, look-alikes, crop recall | + --crops | cold run time |")
    print("| --- | --- | --- | --- | --- |")
    for corpus in a.corpus:
        work = Path(tempfile.mkdtemp(prefix="mhc-crops-"))
        try:
            t0 = run(corpus, work / "plain", work / "plain.sqlite", [], algos)
            t1 = run(corpus, work / "crops", work / "crops.sqlite", ["--crops"], algos)
            b0, b1 = best(work / "plain", corpus), best(work / "crops", corpus)
            for k in sorted(b0):
                p, c = b0[k], b1[k]
                print(f"| {corpus.name} | {k} | {p['f1']:.3f} ({p['folder'].split('/')[-1][:7]}), "
                      f"{p['hard_negatives_merged']}, {crop_recall(p)} | **{c['f1']:.3f}** "
                      f"({c['folder'].split('/')[-1][:7]}), {c['hard_negatives_merged']}, {crop_recall(c)} | "
                      f"{t0:.1f} s -> {t1:.1f} s ({t1 / t0:.2f}x) |")
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
