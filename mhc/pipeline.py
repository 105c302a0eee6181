"""The whole job, as a library call: discover -> hash (cache) -> pairs -> sweep -> write.

>>> from mhc import Options, run
>>> result = run(Options(input="data/images", output="/tmp/out", algorithms=["phash_8"]))
>>> result.algorithms[0].partitions[5].clusters[0]      # indices into result.files
"""
from __future__ import annotations

import csv
import json
import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .algorithms import Algorithm, parse_algorithms
from .cache import HashCache
from .discover import discover
from .errors import FileError, MhcError, UsageError
from .hashing import SSIM_SIDE, HashPlan, HashStats, Progress, compute_hashes
from .matching import VIDEO_MATCHES, MatchOptions, build_media, edge_blocks
from .output import (LINK_MODES, OutputFolder, check_output, cluster_folder, make_link, remove_tree,
                     threshold_folder, unique_link_names)
from .pairs import Edges, pack
from .precision import (capped_sweep, combined_edges, complete_sweep, filtered, isometric_distance_matrix,
                        ssim_filter)
from .report import build_report, render_index
from .suggest import Suggestion, suggest_threshold
from .sweep import Partition, make_partition, spanning_forest, sweep
from .thresholds import parse_thresholds
from .thumbs import ensure_thumbs

log = logging.getLogger(__name__)

CACHE_NAME = ".mhc-cache.sqlite"
HDBSCAN_MAX_FILES = 50_000


@dataclass
class Options:
    """Everything a run needs; the CLI's options map one to one onto these fields."""

    input: str | Path = "data/images"
    output: str | Path = "data/output"
    algorithms: list[str] = field(default_factory=list)  # empty: the default set
    preset: str | None = None
    thresholds: str | None = None  # START:STOP:STEP in bits or percent; None: per hash size
    workers: int = 0  # 0: all cores
    cache: str | Path | None = None  # None: beside the output
    no_cache: bool = False
    exact: bool = False
    link: str = "symlink"
    relative_links: bool = False
    dry_run: bool = False
    no_report: bool = False
    follow_symlinks: bool = False
    max_pixels: int | None = None
    frames: int = 20  # frames sampled per video
    video_exact: bool = False  # exact frame times instead of the nearest keyframes
    video_match: str = "majority"  # or "frames": median distance of time-aligned frames
    cross_media: bool = False  # also link videos with images that match one of their frames
    duration_tolerance: float = 0.05  # videos whose durations differ more are not linked (0: off)
    no_unclustered_links: bool = False  # leave unclustered_U folders empty (faster at scale)
    changed_only: bool = False  # write only threshold folders whose partition changed
    dask: str | None = None  # hash on this Dask scheduler (tcp://host:8786) instead of locally
    isometric: bool = False  # rotated and mirrored copies match (least distance over 8 variants)
    verify: str | None = None  # "ssim" or "ssim:0.6": confirm links by structural similarity
    max_cluster_size: int | None = None  # split larger components along their weakest links
    linkage: str = "single"  # or "complete": every pair of a cluster within the threshold
    method: str = "sweep"  # or "hdbscan": density clustering instead of the threshold sweep
    min_cluster_size: int = 2  # for --method hdbscan
    require: list[str] = field(default_factory=list)  # ["phash_16:30", ...]: combined evidence

    def default_cache_path(self) -> Path:
        out = Path(os.path.abspath(self.output))
        return out.parent / CACHE_NAME


@dataclass
class AlgorithmResult:
    algorithm: Algorithm
    thresholds: list[int]
    partitions: list[Partition]
    hexes: list[str]  # hash of each file (index as in RunResult.files), imagehash's hex
    links: list[str]  # link name of each file
    suggestion: Suggestion | None = None  # the threshold mhc suggests, and why
    folder_override: str | None = None  # hdbscan: the one folder's name instead of thr_NNN_...
    dir_override: str | None = None  # combined evidence: the folder set's name
    codes: np.ndarray | None = None  # the sweep's codes, for distances shown in the report
    variants: np.ndarray | None = None  # isometric variants of the codes, when used

    def first_distances(self, p: Partition) -> list[list[int]]:
        """Each cluster member's distance to the cluster's first file (as the sweep measures
        it: the least over rotations/mirrors with --isometric)."""
        if self.codes is None or not p.clusters:
            return []
        members = np.concatenate(p.clusters)
        firsts = np.repeat([int(c[0]) for c in p.clusters], [len(c) for c in p.clusters])
        a, b = self.codes[members], self.codes[firsts]
        d = np.bitwise_count(a ^ b).sum(axis=1)
        if self.variants is not None:
            va, vb = self.variants[members], self.variants[firsts]  # (m, 8, words)
            d1 = np.bitwise_count(va ^ b[:, None, :]).sum(axis=2).min(axis=1)
            d2 = np.bitwise_count(vb ^ a[:, None, :]).sum(axis=2).min(axis=1)
            d = np.minimum(d, np.minimum(d1, d2))
        out, k = [], 0
        for c in p.clusters:
            out.append(d[k:k + len(c)].astype(int).tolist())
            k += len(c)
        return out

    @property
    def key(self) -> str:
        return self.dir_override or self.algorithm.key


@dataclass
class RunResult:
    input: str
    output: str
    files: list[str]  # every file that was hashed, sorted; cluster members index into it
    errors: list[FileError]
    found: int
    stats: HashStats
    algorithms: list[AlgorithmResult]
    options: Options
    kinds: list[str] = field(default_factory=list)  # "image" or "video", per file
    seconds: float = 0.0

    @property
    def videos(self) -> int:
        return sum(1 for k in self.kinds if k == "video")


@dataclass(frozen=True)
class _Prepared:
    algorithms: list[Algorithm]
    thresholds: dict[str, list[int]]


def validate(options: Options) -> _Prepared:
    """Check every option before any work starts; raises UsageError saying how to fix it."""
    algos = parse_algorithms(options.algorithms, options.preset)
    thresholds = {a.key: parse_thresholds(options.thresholds, a) for a in algos}
    if options.workers < 0:
        raise UsageError(f"--workers must be 0 (all cores) or more, not {options.workers}")
    if options.link not in LINK_MODES:
        raise UsageError(f"--link must be one of {', '.join(LINK_MODES)}, not {options.link!r}")
    if options.max_pixels is not None and options.max_pixels < 1:
        raise UsageError("--max-pixels must be a positive number of pixels, e.g. 200000000")
    if not 1 <= options.frames <= 1000:
        raise UsageError(f"--frames must be 1 to 1000 frames per video, not {options.frames}")
    if options.video_match not in VIDEO_MATCHES:
        raise UsageError(f"--video-match must be one of {', '.join(VIDEO_MATCHES)}, not {options.video_match!r}")
    if options.verify is not None:
        parse_verify(options.verify)
    if options.max_cluster_size is not None and options.max_cluster_size < 2:
        raise UsageError(f"--max-cluster-size must be 2 or more, not {options.max_cluster_size}")
    if options.linkage not in ("single", "complete"):
        raise UsageError(f"--linkage must be single or complete, not {options.linkage!r}")
    if options.method not in ("sweep", "hdbscan"):
        raise UsageError(f"--method must be sweep or hdbscan, not {options.method!r}")
    if options.min_cluster_size < 2:
        raise UsageError(f"--min-cluster-size must be 2 or more, not {options.min_cluster_size}")
    for spec in options.require:
        parse_require(spec)
    if options.require and len(options.require) < 2:
        raise UsageError("--require combines algorithms: give two or more, e.g. --require phash_16:30 --require dhash_16:40")
    if not 0 <= options.duration_tolerance < 1:
        raise UsageError(f"--duration-tolerance is a fraction from 0 (off) to below 1, e.g. 0.05, not {options.duration_tolerance}")
    inp = Path(options.input)
    if not inp.exists():
        raise UsageError(f"input folder {inp} does not exist; pass -i/--input FOLDER with your media")
    if not inp.is_dir():
        raise UsageError(f"input {inp} is not a folder; pass -i/--input FOLDER")
    check_output(Path(options.output), [inp])
    return _Prepared(algos, thresholds)


def parse_verify(spec: str) -> float:
    """``ssim`` or ``ssim:THRESHOLD`` -> the SSIM threshold."""
    from .precision import SSIM_DEFAULT

    name, _, value = spec.partition(":")
    if name.strip().lower() != "ssim":
        raise UsageError(f"--verify {spec!r}: the only verifier is ssim; write --verify ssim or --verify ssim:0.6")
    if not value:
        return SSIM_DEFAULT
    try:
        t = float(value)
    except ValueError:
        t = -2.0
    if not -1 <= t <= 1:
        raise UsageError(f"--verify {spec!r}: the SSIM threshold is a number from -1 to 1, e.g. ssim:0.6")
    return t


def parse_require(spec: str) -> tuple[Algorithm, int]:
    """``phash_16:30`` -> (algorithm, threshold in bits)."""
    name, _, value = spec.partition(":")
    algo = parse_algorithms([name])[0]
    try:
        t = int(value)
    except ValueError:
        raise UsageError(f"--require {spec!r} is not NAME_SIZE:BITS; write e.g. --require phash_16:30") from None
    if not 0 <= t <= algo.bits:
        raise UsageError(f"--require {spec!r}: the threshold must be 0 to {algo.bits} bits")
    return algo, t


def run(options: Options, *, progress: Progress | None = None, executor: Executor | None = None) -> RunResult:
    """Run the whole job and (unless ``dry_run``) write the output tree.

    ``progress(stage, done, total)`` is called as each stage advances. ``executor``:
    hash on it instead of a local process pool (e.g. a Dask client's executor).
    """
    t0 = time.perf_counter()
    prep = validate(options)
    inp = Path(os.path.abspath(options.input))
    out = Path(os.path.abspath(options.output))

    found = discover(inp, exclude=[out], follow_symlinks=options.follow_symlinks)
    if not found.files:
        raise MhcError(
            f"no images or videos found in {inp} (looked for .jpg .jpeg .png .bmp .gif .tif .tiff .webp "
            f".mp4 .mov .mkv .avi .webm ...); pass -i/--input FOLDER with your media"
        )
    if progress:
        progress("scan", len(found.files), len(found.files))

    required = [parse_require(s) for s in options.require]
    hash_algos = list(prep.algorithms) + [a for a, _ in required if a not in prep.algorithms]
    plan = _plan(hash_algos, options)
    cache_path = None if options.no_cache else Path(options.cache or options.default_cache_path())
    with HashCache(cache_path) as cache, _dask_executor(options.dask, executor) as ex:
        hashed = compute_hashes(found.files, plan, cache, workers=options.workers, executor=ex, progress=progress)
        cache.forget_missing(str(inp), [f.path for f in found.files])

    files = sorted(hashed.hashes)
    kind_of = {f.path: f.kind for f in found.files}
    kinds = [kind_of[p] for p in files]
    metas = [hashed.meta.get(p) for p in files]
    ignored = _ignored_pairs(options, files)
    thumbs = ({i: np.frombuffer(hashed.hashes[p]["ssim"], np.uint8).reshape(SSIM_SIDE, SSIM_SIDE)
               for i, p in enumerate(files) if "ssim" in hashed.hashes[p]} if options.verify else {})
    results = []
    for algo in prep.algorithms:
        variants = None
        if options.isometric:
            variants = _variants(algo, [hashed.hashes[p].get(f"{algo.key}|iso") for p in files])
        hashes = [hashed.hashes[p][algo.key] for p in files]
        if options.method == "hdbscan":
            results.append(hdbscan_algorithm(algo, files, hashes, options.min_cluster_size, kinds, metas))
            continue
        results.append(cluster_algorithm(
            algo, files, hashes, prep.thresholds[algo.key], progress, kinds=kinds, metas=metas,
            match=_match(options), variants=variants, thumbs=thumbs,
            verify=parse_verify(options.verify) if options.verify else None,
            max_cluster_size=options.max_cluster_size, linkage=options.linkage, ignored=ignored))
    if required:
        results.append(combined_algorithm(required, files, [[hashed.hashes[p][a.key] for p in files] for a, _ in required]))
    errors = sorted(found.errors + hashed.errors, key=lambda e: e.path)
    result = RunResult(str(inp), str(out), files, errors, len(found.files) + len(found.errors),
                       hashed.stats, results, options, kinds)
    if not options.dry_run:
        write_output(result, progress=progress)
    result.seconds = time.perf_counter() - t0
    return result


def cluster_algorithm(
    algo: Algorithm, files: list[str], hashes: list[bytes], thresholds: list[int], progress: Progress | None = None,
    *, kinds: list[str] | None = None, metas: list[dict | None] | None = None, match: MatchOptions = MatchOptions(),
    variants: np.ndarray | None = None, thumbs: dict[int, np.ndarray] | None = None, verify: float | None = None,
    max_cluster_size: int | None = None, linkage: str = "single", ignored: list[tuple[int, int]] = (),
) -> AlgorithmResult:
    """Pairs within the largest threshold -> spanning forest -> one partition per threshold.

    ``kinds`` and ``metas`` (per file) mark videos, whose ``hashes`` hold all their frames.
    ``variants``: isometric matching; ``verify``: SSIM threshold for links (``thumbs``);
    ``max_cluster_size`` / ``linkage``: see :mod:`mhc.precision`."""
    kinds = kinds or ["image"] * len(files)
    media = build_media(hashes, kinds, metas or [None] * len(files), (algo.bits + 7) // 8)
    step = (lambda stage, done, total: progress(f"pairs {algo.key}", done, total)) if progress else None
    blocks = edge_blocks(media, max(thresholds), match, progress=step, variants=variants)
    if verify is not None:
        blocks = filtered(blocks, ssim_filter(thumbs or {}, verify, isometric=variants is not None))
    extra: list[Edges] = []
    if ignored:
        # "not a duplicate" pairs are never linked; the other links of their files are kept
        # beside the spanning forest, so the constrained sweep can route around them
        blocks = _tap_ignored(blocks, ignored, extra)
    forest = spanning_forest(len(files), blocks)
    if ignored:
        forest = Edges.concat([forest, *extra])
    if linkage == "complete":
        if verify is not None:
            # complete linkage needs every pair's distance; a refused link counts as infinitely far
            raise UsageError("--linkage complete cannot be combined with --verify yet; use one of them")
        dist = _apart(lambda m: isometric_distance_matrix(media.codes, variants, m), ignored, algo.bits + 1)
        partitions = list(complete_sweep(len(files), forest, thresholds, dist))
    elif max_cluster_size or ignored:
        partitions = list(capped_sweep(len(files), forest, thresholds, max_cluster_size, ignored))
    else:
        partitions = list(sweep(len(files), forest, thresholds))
    if progress:
        progress(f"sweep {algo.key}", len(thresholds), len(thresholds))
    hexes = _hexes(algo, media.codes)
    suggestion = suggest_threshold(media.codes, thresholds, algo.bits)
    return AlgorithmResult(algo, thresholds, partitions, hexes, unique_link_names(files, hexes), suggestion,
                           codes=media.codes, variants=variants)


def _hexes(algo: Algorithm, codes: np.ndarray) -> list[str]:
    """The hex hash of each file as the sweep used it (a video's is its majority hash)."""
    nbytes = (algo.bits + 7) // 8
    return [algo.to_hex(row.tobytes()[:nbytes]) for row in codes]


def _tap_ignored(blocks, ignored: list[tuple[int, int]], extra: list[Edges]):
    """Pass blocks through, keeping aside every link that touches a file of an ignored pair
    (the constrained sweep refuses the ignored links themselves)."""
    involved = np.array(sorted({x for pair in ignored for x in pair}), dtype=np.int64)
    for b in blocks:
        touch = np.isin(b.i, involved) | np.isin(b.j, involved)
        if touch.any():
            extra.append(Edges(b.i[touch], b.j[touch], b.d[touch]))
        yield b


def _apart(dist, ignored: list[tuple[int, int]], far: int):
    """A distance-matrix function where ignored pairs are farther than any threshold."""
    if not ignored:
        return dist
    partner: dict[int, set[int]] = {}
    for a, b in ignored:
        partner.setdefault(a, set()).add(b)
        partner.setdefault(b, set()).add(a)

    def apart(members: np.ndarray) -> np.ndarray:
        d = dist(members)
        pos = {int(m): k for k, m in enumerate(members)}
        for m, k in pos.items():
            for other in partner.get(m, ()):
                if other in pos:
                    d[k, pos[other]] = d[pos[other], k] = far
        return d

    return apart


def _variants(algo: Algorithm, values: list[bytes | None]) -> np.ndarray:
    """(n, 8, words) codes of each image's 8 variants; videos repeat their own hash."""
    nbytes = (algo.bits + 7) // 8
    rows = []
    for v in values:
        rows.append([v[k * nbytes:(k + 1) * nbytes] for k in range(8)] if v else None)
    width = pack([b"\0" * nbytes]).shape[1]
    out = np.zeros((len(values), 8, width), dtype=np.uint64)
    for i, r in enumerate(rows):
        if r is not None:
            out[i] = pack(r)
    return out


def hdbscan_algorithm(algo: Algorithm, files: list[str], hashes: list[bytes], min_size: int,
                      kinds: list[str], metas: list[dict | None]) -> AlgorithmResult:
    """Density clustering (scikit-learn's HDBSCAN) over Hamming distances; noise = unclustered."""
    if len(files) > HDBSCAN_MAX_FILES:
        raise MhcError(
            f"--method hdbscan on {len(files):,} files: HDBSCAN's core distances and spanning tree cost O(n^2) "
            f"time over Hamming distances; it is limited to {HDBSCAN_MAX_FILES:,} files. Use the sweep beyond.")
    try:
        from sklearn.cluster import HDBSCAN
    except ImportError:
        raise UsageError("--method hdbscan needs scikit-learn: pip install 'mhc[precision]'") from None
    media = build_media(hashes, kinds, metas, (algo.bits + 7) // 8)
    n = len(files)
    if n < 2:
        labels = np.full(n, -1)
    else:
        bits = np.unpackbits(media.codes.view(np.uint8), axis=1)[:, : algo.bits].astype(bool)
        labels = HDBSCAN(min_cluster_size=max(2, min_size), min_samples=1, metric="hamming",
                         algorithm="balltree" if n > 2000 else "brute", allow_single_cluster=True,
                         copy=True).fit_predict(bits)
    comps = [np.flatnonzero(labels == lab) for lab in np.unique(labels) if lab >= 0]
    part = make_partition(n, 0, [c for c in comps if len(c) > 1])
    hexes = _hexes(algo, media.codes)
    return AlgorithmResult(algo, [0], [part], hexes, unique_link_names(files, hexes), None,
                           folder_override=f"hdbscan_min{max(2, min_size)}")


def combined_algorithm(required: list[tuple[Algorithm, int]], files: list[str], hashes: list[list[bytes]]) -> AlgorithmResult:
    """Combined evidence: linked only where every algorithm agrees within its threshold.
    Swept over 25/50/75/100 % of the given thresholds."""
    edges = combined_edges([(pack(h), t) for (a, t), h in zip(required, hashes)])
    thresholds = [25, 50, 75, 100]
    forest = spanning_forest(len(files), [edges])
    partitions = list(sweep(len(files), forest, thresholds))
    first = required[0][0]
    hexes = [first.to_hex(h) for h in hashes[0]]
    key = "combined_" + "_".join(f"{a.key}-{t}" for a, t in required)
    algo = Algorithm(key, 0)
    return AlgorithmResult(algo, thresholds, partitions, hexes, unique_link_names(files, hexes), None,
                           dir_override=key)


def _ignored_pairs(options: Options, files: list[str]) -> list[tuple[int, int]]:
    """File index pairs marked "not a duplicate" (kept in the cache file, read even with
    --no-cache: they are the user's decisions, not derived data)."""
    path = Path(options.cache or options.default_cache_path())
    if not path.exists():
        return []
    with HashCache(path) as cache:
        marked = cache.ignored()
    if not marked:
        return []
    index = {os.path.realpath(p): i for i, p in enumerate(files)}
    return [(index[a], index[b]) for a, b in marked if a in index and b in index]


@contextmanager
def _dask_executor(address: str | None, executor: Executor | None) -> Iterator[Executor | None]:
    """The executor to hash on: the caller's, a Dask cluster's (``--dask``), or None (local pool).

    Dask's own ``concurrent.futures`` interface (``Client.get_executor``) runs the same
    batches the local pool runs: one code path. Workers must see the files at the same paths."""
    if executor is not None or not address:
        yield executor
        return
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("--dask needs Dask's distributed scheduler: pip install 'mhc[dask]'") from None
    try:
        client = Client(address, timeout=20)
    except (OSError, TimeoutError) as e:
        raise MhcError(f"cannot reach the Dask scheduler at {address} ({e}); check the address, "
                       f"e.g. --dask tcp://scheduler:8786") from None
    try:
        yield client.get_executor()
    finally:
        client.close()


def _plan(algos: list[Algorithm], options: Options) -> HashPlan:
    return HashPlan.build(algos, exact=options.exact, max_pixels=options.max_pixels, frames=options.frames,
                          video_exact=options.video_exact, isometric=options.isometric,
                          verify=options.verify is not None)


def _match(options: Options) -> MatchOptions:
    return MatchOptions(cross_media=options.cross_media, video_match=options.video_match,
                        duration_tolerance=options.duration_tolerance)


# -- writing ------------------------------------------------------------------
def summary_dict(result: RunResult, previous: dict | None = None) -> dict:
    """``summary.json``: counts, and every cluster of every threshold (indices into ``files``)."""
    files = list(result.files)
    algos: dict[str, dict] = {}
    carried: list[str] = []
    previous_kinds = dict(zip((previous or {}).get("files", []), (previous or {}).get("kinds", [])))
    if previous and previous.get("input") == result.input:
        # algorithms of the previous run that this one did not run stay in the output
        index = {p: i for i, p in enumerate(files)}
        old_files = previous.get("files", [])
        for key, entry in previous.get("algorithms", {}).items():
            if any(a.key == key for a in result.algorithms):
                continue
            for p in old_files:
                if p not in index:
                    index[p] = len(files)
                    files.append(p)
            remap = [index[p] for p in old_files]
            entry = dict(entry)
            entry["file_index"] = [remap[i] for i in entry.get("file_index", [])]
            entry["thresholds"] = [
                dict(t, members=[[remap[i] for i in c] for c in t["members"]]) for t in entry["thresholds"]
            ]
            algos[key] = entry
            carried.append(key)
    for a in result.algorithms:
        algos[a.key] = {
            "name": a.algorithm.name,
            "size": a.algorithm.size,
            "bits": a.algorithm.bits if not a.dir_override else 100,
            "file_index": list(range(len(result.files))),
            "hashes": a.hexes,
            "links": a.links,
            "suggested": a.suggestion.to_dict() if a.suggestion else None,
            "thresholds": [
                {
                    "threshold": p.threshold,
                    "folder": _thr_name(a, p),
                    "clusters": len(p.clusters),
                    "clustered_files": p.clustered_files,
                    "largest": p.largest,
                    "unclustered": len(p.unclustered),
                    "members": [c.tolist() for c in p.clusters],
                    "distances": a.first_distances(p),
                    "written": p.changed or not result.options.changed_only,
                }
                for p in a.partitions
            ],
        }
    opts = asdict(result.options)
    opts = {k: (str(v) if isinstance(v, Path) else v) for k, v in opts.items()}
    return {
        "mhc_version": __version__,
        "input": result.input,
        "output": result.output,
        "options": opts,
        "counts": {
            "found": result.found,
            "images": len(result.kinds) - result.videos,
            "videos": result.videos,
            "hashed_now": result.stats.hashed,
            "from_cache": result.stats.cached,
            "failed": len(result.errors),
            "clustered_input_files": len(result.files),
        },
        "files": files,
        "kinds": list(result.kinds) + [previous_kinds.get(p, "image") for p in files[len(result.files):]],
        "carried_over": carried,
        "algorithms": algos,
    }


def _width(values: list[int]) -> int:
    return max(3, len(str(max(values, default=0))))


def _thr_name(a: AlgorithmResult, p: Partition) -> str:
    if a.folder_override:
        return a.folder_override
    return threshold_folder(p.threshold, len(p.unclustered), _width(a.thresholds))


def write_output(result: RunResult, *, progress: Progress | None = None) -> bool:
    """Write the tree for ``result`` (staged, then swapped in; see :mod:`mhc.output`).

    When the clusters, names and link settings equal the previous run's, the tree on disk
    is already right: only ``summary.json``, ``errors.csv`` and ``index.html`` are replaced
    (atomically), so a warm rerun does not rewrite 100,000s of links. Returns True if the
    tree was rebuilt.
    """
    opts = result.options
    with OutputFolder(result.output, [Path(result.input)]) as of:
        previous = of.previous_summary()
        summary = summary_dict(result, previous)
        if previous is not None and _same_tree(summary, previous):
            of.replace_file("errors.csv", lambda p: write_errors_csv(p, result.errors))
            of.replace_file("summary.json", lambda p: _write_json(p, summary))
            if not opts.no_report:
                of.replace_file("index.html", lambda p: p.write_text(render_index(summary), encoding="utf-8"))
            return False
        staging = of.stage()
        for key in summary["carried_over"]:
            of.carry_over(key)
        total = sum(len(a.partitions) for a in result.algorithms)
        done = 0
        for a in result.algorithms:
            base = staging / a.key
            base.mkdir()
            for p in a.partitions:
                if p.changed or not opts.changed_only:
                    write_partition(base / _thr_name(a, p), p, result.files, a.links, opts.link, opts.relative_links,
                                    unclustered_links=not opts.no_unclustered_links)
                done += 1
                if progress:
                    progress("write", done, total)
        _write_json(staging / "summary.json", summary)
        write_errors_csv(staging / "errors.csv", result.errors)
        if not opts.no_report:
            write_report(staging, summary, previous=of.out if of.out.exists() else None,
                         workers=opts.workers, progress=progress)
        left = of.commit()
        if left:
            log.warning("left %d entries of the previous output that mhc did not make, e.g. %s", len(left), left[0])
    return True


def write_report(out: Path, summary: dict, *, previous: Path | None = None, workers: int = 0,
                 progress: Progress | None = None) -> None:
    """Thumbnails (made once, reused from ``previous``) and the HTML report under ``out``."""
    files = summary["files"]
    kinds = summary.get("kinds") or ["image"] * len(files)
    thumbs = ensure_thumbs(files, out, previous, kinds=kinds, workers=workers, progress=progress)
    build_report(out, summary, thumbs)


def _same_tree(new: dict, old: dict) -> bool:
    keys = ("link", "relative_links", "no_report")
    return (
        new["files"] == old.get("files")
        and new["algorithms"] == old.get("algorithms")
        and all(new["options"].get(k) == old.get("options", {}).get(k) for k in keys)
    )


def write_partition(
    folder: Path, p: Partition, files: list[str], links: list[str], mode: str = "symlink", relative: bool = False,
    *, unclustered_links: bool = True,
) -> None:
    """One threshold folder: ``RANK_SIZE/`` per cluster, then ``unclustered_U/`` (left empty
    without ``unclustered_links``)."""
    folder.mkdir()
    width = _width([len(p.clusters)])
    groups = [(cluster_folder(r, len(c), width), c) for r, c in enumerate(p.clusters, 1)]
    groups.append((f"unclustered_{len(p.unclustered)}", p.unclustered))
    for k, (name, members) in enumerate(groups):
        d = folder / name
        d.mkdir()
        ds = str(d)
        if k == len(groups) - 1 and not unclustered_links:
            continue
        for i in members.tolist():
            make_link(files[i], os.path.join(ds, links[i]), mode, relative)


def _write_json(path: Path, data: dict) -> None:
    with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
        json.dump(data, f, ensure_ascii=True, indent=1)


def write_errors_csv(path: Path, errors: list[FileError]) -> None:
    with open(path, "w", encoding="utf-8", errors="backslashreplace", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "reason"])
        for e in errors:
            w.writerow([e.path, e.reason])


def rebuild_report(output: str | Path, *, workers: int = 0) -> Path:
    """Rebuild ``index.html`` and ``report/`` of an existing output from its summary.json."""
    out = Path(os.path.abspath(output))
    summary_path = out / "summary.json"
    if not summary_path.exists():
        raise MhcError(f"{out} has no summary.json; run mhc first (mhc -o {output})")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    with OutputFolder(out, [Path(summary.get("input", "/nonexistent"))]) as of:
        work = of.stage()  # build the new report aside, then swap it in
        (work / ".mhc").mkdir()
        os.rename(out / ".mhc", work / ".mhc" / "old") if (out / ".mhc").exists() else None
        try:
            write_report(work, summary, previous=work / ".mhc" / "old" if (work / ".mhc" / "old").exists() else None,
                         workers=workers)
        finally:
            old = work / ".mhc" / "old"
            if old.exists():
                remove_tree(old)
        for name in (".mhc", "report"):
            if (out / name).exists():
                os.rename(out / name, work / f"{name}.old")
            os.rename(work / name, out / name)
        of.replace_file("index.html", lambda p: os.replace(work / "index.html", p))
    return out / "index.html"


def list_pairs(options: Options, threshold: int) -> list[tuple[str, str, int]]:
    """Every pair of files within ``threshold`` bits for the one algorithm in ``options``,
    closest first. Hashes come from the cache where valid."""
    prep = validate_input(options)
    if len(prep) != 1:
        raise UsageError("mhc pairs takes exactly one -a/--algo")
    algo = prep[0]
    if not 0 <= threshold <= algo.bits:
        raise UsageError(f"--threshold must be 0 to {algo.bits} for {algo.key}, not {threshold}")
    inp = Path(os.path.abspath(options.input))
    found = discover(inp, exclude=[Path(os.path.abspath(options.output))], follow_symlinks=options.follow_symlinks)
    if not found.files:
        raise MhcError(f"no images found in {inp}; pass -i/--input FOLDER with your media")
    plan = _plan([algo], options)
    cache_path = None if options.no_cache else Path(options.cache or options.default_cache_path())
    with HashCache(cache_path) as cache:
        hashed = compute_hashes(found.files, plan, cache, workers=options.workers)
    files = sorted(hashed.hashes)
    kind_of = {f.path: f.kind for f in found.files}
    media = build_media([hashed.hashes[p][algo.key] for p in files], [kind_of[p] for p in files],
                        [hashed.meta.get(p) for p in files], (algo.bits + 7) // 8)
    variants = _variants(algo, [hashed.hashes[p].get(f"{algo.key}|iso") for p in files]) if options.isometric else None
    blocks = edge_blocks(media, threshold, _match(options), variants=variants)
    edges = Edges.concat(list(blocks)).least().sorted()
    return [(files[i], files[j], int(d)) for i, j, d in zip(edges.i.tolist(), edges.j.tolist(), edges.d.tolist())]


def validate_input(options: Options) -> list[Algorithm]:
    algos = parse_algorithms(options.algorithms, options.preset)
    inp = Path(options.input)
    if not inp.is_dir():
        raise UsageError(f"input folder {inp} does not exist; pass -i/--input FOLDER with your media")
    return algos
