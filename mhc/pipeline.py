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

from . import __version__
from .algorithms import Algorithm, parse_algorithms
from .cache import HashCache
from .discover import discover
from .errors import FileError, MhcError, UsageError
from .hashing import MIN_FILES_FOR_POOL, HashPlan, HashStats, Progress, compute_hashes, local_executor
from .output import (LINK_MODES, OutputFolder, check_output, cluster_folder, make_link, remove_tree, threshold_folder,
                     unique_link_names)
from .matching import VIDEO_MATCHES, MatchOptions, build_media, edge_blocks
from .pairs import Edges
from .report import build_report, render_index
from .thumbs import ensure_thumbs
from .suggest import Suggestion, suggest_threshold
from .sweep import Partition, spanning_forest, sweep
from .thresholds import parse_thresholds

log = logging.getLogger(__name__)

CACHE_NAME = ".mhc-cache.sqlite"


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
    if not 0 <= options.duration_tolerance < 1:
        raise UsageError(f"--duration-tolerance is a fraction from 0 (off) to below 1, e.g. 0.05, not {options.duration_tolerance}")
    inp = Path(options.input)
    if not inp.exists():
        raise UsageError(f"input folder {inp} does not exist; pass -i/--input FOLDER with your media")
    if not inp.is_dir():
        raise UsageError(f"input {inp} is not a folder; pass -i/--input FOLDER")
    check_output(Path(options.output), [inp])
    return _Prepared(algos, thresholds)


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

    plan = _plan(prep.algorithms, options)
    cache_path = None if options.no_cache else Path(options.cache or options.default_cache_path())
    with HashCache(cache_path) as cache, _dask_executor(options.dask, executor) as ex:
        hashed = compute_hashes(found.files, plan, cache, workers=options.workers, executor=ex, progress=progress)
        cache.forget_missing(str(inp), [f.path for f in found.files])

    files = sorted(hashed.hashes)
    kind_of = {f.path: f.kind for f in found.files}
    kinds = [kind_of[p] for p in files]
    metas = [hashed.meta.get(p) for p in files]
    results = [
        cluster_algorithm(algo, files, [hashed.hashes[p][algo.key] for p in files], prep.thresholds[algo.key],
                          progress, kinds=kinds, metas=metas, match=_match(options))
        for algo in prep.algorithms
    ]
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
) -> AlgorithmResult:
    """Pairs within the largest threshold -> spanning forest -> one partition per threshold.

    ``kinds`` and ``metas`` (per file) mark videos, whose ``hashes`` hold all their frames."""
    kinds = kinds or ["image"] * len(files)
    media = build_media(hashes, kinds, metas or [None] * len(files), (algo.bits + 7) // 8)
    step = (lambda stage, done, total: progress(f"pairs {algo.key}", done, total)) if progress else None
    forest = spanning_forest(len(files), edge_blocks(media, max(thresholds), match, progress=step))
    partitions = list(sweep(len(files), forest, thresholds))
    if progress:
        progress(f"sweep {algo.key}", len(thresholds), len(thresholds))
    sweep_hashes = [media.codes[i].tobytes()[: (algo.bits + 7) // 8] for i in range(len(files))]
    hexes = [algo.to_hex(h) for h in sweep_hashes]
    suggestion = suggest_threshold(media.codes, thresholds, algo.bits)
    return AlgorithmResult(algo, thresholds, partitions, hexes, unique_link_names(files, hexes), suggestion)


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
                          video_exact=options.video_exact)


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
            if any(a.algorithm.key == key for a in result.algorithms):
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
        algos[a.algorithm.key] = {
            "name": a.algorithm.name,
            "size": a.algorithm.size,
            "bits": a.algorithm.bits,
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
            base = staging / a.algorithm.key
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
    executor = local_executor(workers or os.cpu_count() or 1) if len(files) >= MIN_FILES_FOR_POOL else None
    try:
        thumbs = ensure_thumbs(files, out, previous, kinds=kinds, executor=executor, progress=progress)
    finally:
        if executor is not None:
            executor.shutdown(wait=True)
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
    edges = Edges.concat(list(edge_blocks(media, threshold, _match(options)))).sorted()
    return [(files[i], files[j], int(d)) for i, j, d in zip(edges.i.tolist(), edges.j.tolist(), edges.d.tolist())]


def validate_input(options: Options) -> list[Algorithm]:
    algos = parse_algorithms(options.algorithms, options.preset)
    inp = Path(options.input)
    if not inp.is_dir():
        raise UsageError(f"input folder {inp} does not exist; pass -i/--input FOLDER with your media")
    return algos
