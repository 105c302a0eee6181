#!/usr/bin/env python3
"""Video sampling and hashing speed, and clustering quality on the video corpus.

    python benchmarks/video.py --videos /tmp/videos [--workers 2]

--videos is a corpus made by ../shared/corpus/make_videos.py. For the default sampling
(nearest keyframes, decoding on only where keyframes are sparse) and for --video-exact it
times, in one run: sampling alone, and sampling + hashing of mhc's default algorithms
(cold cache), and prints videos/s and seconds of video per second. Then it runs
./cluster.py on the corpus and prints score.py's summary line for every algorithm.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mhc import HashCache, HashPlan, compute_hashes, discover, parse_algorithms  # noqa: E402
from mhc.video import VideoSettings, sample_frames  # noqa: E402


def _sample(args):
    path, exact = args
    try:
        return len(sample_frames(path, VideoSettings(exact=exact)).frames)
    except Exception:
        return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=Path, required=True)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    files = [f for f in discover(args.videos).files if f.kind == "video"]
    labels = json.loads((args.videos / "labels.json").read_text())
    seconds = sum(v.get("duration", 0) for v in labels["files"].values())
    print(f"{len(files)} videos, {seconds:.0f} s of video in all; {args.workers} processes")
    algos = parse_algorithms([])
    with ProcessPoolExecutor(args.workers) as ex, tempfile.TemporaryDirectory() as td:
        list(ex.map(_sample, [(files[0].path, False)] * args.workers))  # warm up the workers
        for exact in (False, True):
            t = time.perf_counter()
            list(ex.map(_sample, [(f.path, exact) for f in files]))
            ts = time.perf_counter() - t
            plan = HashPlan.build(algos, video_exact=exact)
            with HashCache(Path(td) / f"c{exact}.sqlite") as cache:
                t = time.perf_counter()
                compute_hashes(files, plan, cache, executor=ex, workers=args.workers)
                th = time.perf_counter() - t
            name = "exact frames" if exact else "nearest keyframes (default)"
            print(f"{name:28s} sampling {len(files) / ts:5.2f} videos/s ({seconds / ts:5.1f} s of video/s); "
                  f"sampling + hashing {len(files) / th:5.2f} videos/s ({seconds / th:5.1f} s of video/s)")
        out = Path(td) / "out"
        subprocess.run([sys.executable, str(ROOT / "cluster.py"), "-q", "-i", str(args.videos), "-o", str(out),
                        "--no-report", "--cache", str(Path(td) / "c.sqlite")], check=True)
        score = subprocess.run([sys.executable, str(ROOT.parent / "shared" / "corpus" / "score.py"), str(out),
                                "--corpus", str(args.videos), "--json"], capture_output=True, text=True, check=True)
        doc = json.loads(score.stdout)
        best: dict[str, dict] = {}
        problems = 0
        for r in doc["thresholds"]:
            algo = r["folder"].split("/")[0]
            problems += r["missing"] + r["duplicated"] + r["unknown"] + r["bad_files_present"]
            if r["no_hard"]["f1"] > best.get(algo, {"no_hard": {"f1": -1}})["no_hard"]["f1"]:
                best[algo] = r
        print(f"\nscore.py: files missing, duplicated, unknown or bad in any folder: {problems}")
        for algo, r in best.items():
            print(f"  {algo:9s} best F1 without hard {r['no_hard']['f1']:.3f} at {r['folder'].split('/')[1]} "
                  f"(overall {r['f1']:.3f}, hard negatives merged {r['hard_negatives_merged']})")


if __name__ == "__main__":
    main()
