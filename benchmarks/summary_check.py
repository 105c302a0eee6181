"""The check of a previous summary.json before a rerun, `mhc report` or `mhc pairs` use it
(mhc.summary.damage, with mhc.summary_format): a run's summary grown to N files in memory,
timed against a floor measured in the same run (json.loads of that summary's text).

    python benchmarks/summary_check.py OUTPUT [--files 1000000]

OUTPUT: any output folder mhc wrote (e.g. data/output after `make run`).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output", type=Path)
    ap.add_argument("--files", type=int, default=1_000_000)
    args = ap.parse_args()
    from mhc.summary import damage

    doc = json.loads((args.output / "summary.json").read_text())
    n, m = args.files, len(doc["files"])
    grow = lambda v: (v * (n // len(v) + 1))[:n]  # noqa: E731
    doc["files"] = [f"{f}.{k}" for k, f in enumerate(grow(doc["files"]))]
    doc["kinds"] = grow(doc["kinds"])
    doc["file_info"] = {k: grow(v) for k, v in doc["file_info"].items()}
    doc["file_info"]["same_file_as"] = [None] * n
    doc["file_info"].pop("crop_of", None)
    for e in doc["algorithms"].values():
        e["hashes"] = grow(e["hashes"])
    text = json.dumps(doc)
    t = time.perf_counter()
    json.loads(text)
    floor = time.perf_counter() - t
    t = time.perf_counter()
    problem = damage(doc)
    took = time.perf_counter() - t
    assert problem is None, problem
    print(f"summary of {m} files grown to {n:,} ({len(doc['algorithms'])} algorithms): damage() {took:.2f} s; "
          f"json.loads of it {floor:.2f} s (ratio {took / floor:.2f})")


if __name__ == "__main__":
    main()
