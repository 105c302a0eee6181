"""The whole job, as one library call: discover -> hash (cache) -> cluster -> write + report.

>>> from mhc import Options, run
>>> result = run(Options(input="data/images", output="/tmp/out", algorithms=["phash_8"]))
>>> result.algorithms[0].partitions[5].clusters[0]      # indices into result.files
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .algorithms import Algorithm, parse_algorithm
from .cache import HashCache
from .clustering import (
    HDBSCAN_MAX_FILES,
    Clustering,
    ForestCache,
    combined_evidence,
    hdbscan_algorithm,
    sweep_algorithm,
)
from .collection import HashedCollection, collect, find_media, hash_plan
from .discover import Discovery
from .errors import EnvironmentFault, FileError, UsageError
from .events import Progress
from .hashing import HashPlan
from .metric import MatchOptions
from .options import Options, RunPlan, default_cache_path, validate
from .paths import inside
from .suggest import Recommendation, settle

if TYPE_CHECKING:
    from .output import OutputFolder

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a run found and made."""

    input: str
    output: str
    collection: HashedCollection
    algorithms: list[Clustering]  # in output order: this run's, then those kept from earlier runs
    options: Options
    dropped: list[str] = field(default_factory=list)  # earlier runs' folders removed, with why
    recommendation: Recommendation | None = None  # the folder to open first
    written: bool = False  # False: a dry run, or the tree on disk was already right
    seconds: float = 0.0

    @property
    def files(self) -> list[str]:
        return self.collection.files

    @property
    def errors(self) -> list[FileError]:
        return self.collection.errors

    @property
    def disk_errors(self) -> list[FileError]:
        """The files that failed through their disk's fault (I/O errors): see
        :attr:`HashedCollection.disk_errors`."""
        return self.collection.disk_errors

    @property
    def kinds(self) -> list[str]:
        return self.collection.kinds

    @property
    def stats(self):
        return self.collection.stats

    @property
    def found(self) -> int:
        return self.collection.found

    @property
    def videos(self) -> int:
        return self.collection.videos


def run(options: Options, *, progress: Progress | None = None, executor: Executor | None = None,
        background_cleanup: bool = True) -> RunResult:
    """Run the whole job and (unless ``dry_run``) write the output tree.

    ``progress`` receives :class:`~mhc.events.ProgressEvent` as stages advance.
    ``executor``: hash on it instead of a local process pool (e.g. a Dask client's
    executor). ``background_cleanup``: the previous tree is removed by a detached process
    (False: before returning)."""
    t0 = time.perf_counter()
    plan = validate(options)
    if options.dry_run:
        found = _find(plan, progress)
        collection = collect(plan, progress=progress, executor=executor, found=found, for_run=True)
        result = RunResult(str(plan.input), str(plan.output), collection, cluster_all(collection, plan, progress),
                           options)
        result.recommendation = settle(result.algorithms, len(collection.files))
    else:
        from .output import OutputFolder

        # the output first: its lock, and what it holds that mhc would refuse to replace, are
        # said before a scan that takes minutes on a large collection
        of = OutputFolder(plan.output, plan.input, background_retire=background_cleanup)
        try:
            result = _write(of, plan, progress, executor)
        except BaseException as e:
            if of.committed:  # the failure came after the swap (releasing the output): the new tree is whole
                e.output_replaced = str(plan.output)  # type: ignore[attr-defined]  (mhc.cli says so)
            raise
    result.seconds = time.perf_counter() - t0
    return result


def _write(of: OutputFolder, plan: RunPlan, progress: Progress | None, executor: Executor | None) -> RunResult:
    """The run into the output folder ``of``, its lock held throughout."""
    from .writing import write_output

    options = plan.options
    with of:
        found = _find(plan, progress)
        previous = of.previous_summary()
        if previous is None:
            _check_room_before_hashing(plan, found)
        carried, dropped = carried_entries(previous, plan)
        collection = collect(plan, progress=progress, executor=executor, found=found,
                             hplan=dataclasses.replace(_with_carried(hash_plan(plan), carried),
                                                       thumb_dir=_thumb_dir(of, options)), for_run=True)
        forests = ForestCache(f"{plan.cache}.forests") if plan.cache is not None else None
        collection.match_cache = forests  # a rerun reads its confirmed crops instead of verifying again
        clusterings = cluster_all(collection, plan, progress, forests, previous)
        clusterings += [recluster(collection, key, entry, _cannot_link(plan, collection)) for key, entry in carried]
        result = RunResult(str(plan.input), str(plan.output), collection, clusterings, options, dropped)
        result.recommendation = settle(clusterings, len(collection.files))
        result.written = write_output(of, result, previous, progress)
    return result


def _check_room_before_hashing(plan: RunPlan, found: Discovery) -> None:
    """A new tree of copies (--link copy, unclustered files too) holds every file once per
    threshold folder: known before hashing, save for the files that turn out unreadable.
    The exact check comes before the first copy (``writing``), but only after hashing, which
    takes hours on a large collection; a tree that would not fit even if half the bytes were
    unreadable is refused here instead. (A rerun moves its unchanged folders: not checked.)"""
    from .room import FEWER_COPIES, amount, free_space

    o = plan.options
    if o.link != "copy" or o.no_unclustered_links or o.changed_only or o.method != "sweep":
        return
    folders = sum(len(plan.thresholds[a.key]) for a in plan.algorithms)
    need = sum(f.size for f in found.files) * folders
    where, free = free_space(Path(os.path.abspath(plan.output)))
    if need / 2 > free:
        raise EnvironmentFault(f"--link copy would copy about {amount(need)} ({len(found.files)} files once in each "
                               f"of {folders} threshold folders) and {where} has {amount(free)} free; {FEWER_COPIES} "
                               f"(refused before hashing)")


def _find(plan: RunPlan, progress: Progress | None) -> Discovery:
    found = find_media(plan, progress)
    if plan.options.method == "hdbscan" and len(found.files) > HDBSCAN_MAX_FILES:
        raise UsageError(f"--method hdbscan on {len(found.files):,} files: its cost grows with the square of the "
                         f"files; it is limited to {HDBSCAN_MAX_FILES:,}. Use the sweep beyond.")
    return found


def match_options(o: Options) -> MatchOptions:
    return MatchOptions(cross_media=o.cross_media, video_match=o.video_match, duration_tolerance=o.duration_tolerance)


def cluster_all(collection: HashedCollection, plan: RunPlan, progress: Progress | None = None,
                forests: ForestCache | None = None, previous: dict | None = None) -> list[Clustering]:
    """Every clustering the options ask for, in output order (``forests``: spanning forests
    of earlier runs, reused where the hashes are the same; ``previous``: the output's last
    summary, whose forests are grown where files were only added)."""
    o = plan.options
    cannot = _cannot_link(plan, collection)
    match = match_options(o)
    out = []
    for algo in plan.algorithms:
        if o.method == "hdbscan":
            out.append(hdbscan_algorithm(collection, algo, min_cluster_size=o.min_cluster_size, match=match,
                                         cannot_link=cannot))
        else:
            out.append(sweep_algorithm(collection, algo, plan.thresholds[algo.key], linkage=o.linkage,
                                       max_cluster_size=o.max_cluster_size, verify=plan.verify,
                                       isometric=o.isometric, match=match, cannot_link=cannot, progress=progress,
                                       forests=forests, previous=previous, crops=o.crops))
    if plan.required:
        out.append(combined_evidence(collection, plan.required, linkage=o.linkage,
                                     max_cluster_size=o.max_cluster_size, verify=plan.verify, isometric=o.isometric,
                                     match=match, cannot_link=cannot, progress=progress, crops=o.crops))
    return out


# -- folders of earlier runs ---------------------------------------------------------------
def carried_entries(previous: dict | None, plan: RunPlan) -> tuple[list[tuple[str, dict]], list[str]]:
    """Algorithm folders of the previous run that this run does not make: they are
    recomputed from cached hashes (this run's decoding, their own clustering settings),
    so every folder of the output reflects the current input. Returns (kept, dropped with
    the reason)."""
    if not previous or previous.get("format") != 2:
        return [], [f"{k} (made by an older mhc)" for k in (previous or {}).get("algorithms", {})]
    mine = {a.key for a in plan.algorithms} | ({"combined_" + "_".join(f"{a.key}-{t}" for a, t in plan.required)}
                                               if plan.required else set())
    kept, dropped = [], []
    for key, entry in previous.get("algorithms", {}).items():
        if key in mine:
            continue
        if previous.get("input") != str(plan.input):
            dropped.append(f"{key} (made from another input, {previous.get('input')})")
        else:
            kept.append((key, entry))
    return kept, dropped


def _entry_algorithms(key: str, entry: dict) -> list[Algorithm]:
    if entry.get("method") == "sweep" and key.startswith("combined_"):
        return [parse_algorithm(s.partition(":")[0]) for s in entry["settings"]["require"]]
    return [parse_algorithm(key)]


def _with_carried(hplan: HashPlan, carried: list[tuple[str, dict]]) -> HashPlan:
    algos = list(hplan.algorithms)
    iso, verify, crops = hplan.isometric, hplan.verify, hplan.crops
    for key, entry in carried:
        algos += [a for a in _entry_algorithms(key, entry) if a not in algos]
        iso |= bool(entry["settings"].get("isometric"))
        verify |= entry["settings"].get("verify") is not None
        crops |= bool(entry["settings"].get("crops"))
    return dataclasses.replace(hplan, algorithms=tuple(algos), isometric=iso, verify=verify, crops=crops)


def _thumb_dir(of, options: Options) -> str | None:
    """Where hashing writes the report's thumbnails (see HashPlan.thumb_dir): the output's
    .mhc/thumbs, kept across runs (the live one, else the new tree's)."""
    if options.no_report:
        return None
    from .thumbmarks import check_left_thumbs
    from .thumbs import THUMB_DIR

    d = of.mhc_home() / THUMB_DIR
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # the report says what is wrong when it gets there
    check_left_thumbs(d)  # before hashing reuses one a power cut left empty
    return str(d)


def recluster(collection: HashedCollection, key: str, entry: dict, cannot: list[tuple[int, int]]) -> Clustering:
    """An earlier run's clustering, recomputed with its recorded settings."""
    s = entry["settings"]
    match = MatchOptions(cross_media=s.get("cross_media", False), video_match=s.get("video_match", "majority"),
                         duration_tolerance=s.get("duration_tolerance", 0.05))
    if entry.get("method") == "hdbscan":
        c = hdbscan_algorithm(collection, parse_algorithm(key), min_cluster_size=s["min_cluster_size"], match=match,
                              cannot_link=cannot)
    elif key.startswith("combined_"):
        required = [(parse_algorithm(r.partition(":")[0]), int(r.partition(":")[2])) for r in s["require"]]
        c = combined_evidence(collection, required, linkage=s["linkage"], max_cluster_size=s["max_cluster_size"],
                              verify=s["verify"], isometric=s["isometric"], match=match, cannot_link=cannot,
                              crops=s.get("crops", False))
    else:
        c = sweep_algorithm(collection, parse_algorithm(key), s["thresholds"], linkage=s["linkage"],
                            max_cluster_size=s["max_cluster_size"], verify=s["verify"], isometric=s["isometric"],
                            match=match, cannot_link=cannot, crops=s.get("crops", False))
    c.carried = True
    c.link_settings = (entry.get("link", "symlink"), entry.get("relative_links", False),
                       entry.get("unclustered_links", True))
    return c


def _cannot_link(plan: RunPlan, collection: HashedCollection) -> list[tuple[int, int]]:
    """File index pairs marked "not a duplicate" (kept in the cache file, read even with
    --no-cache: they are the user's decisions, not derived data)."""
    path = Path(plan.options.cache) if plan.options.cache is not None else default_cache_path()
    if not path.is_file():
        return []
    # quiet when the run hashed with this same file: that opening said what is wrong with it
    quiet = plan.cache is not None and os.path.realpath(plan.cache) == os.path.realpath(path)
    with HashCache(path, readonly=True, untouched=inside(path, plan.input), quiet=quiet) as cache:
        marked = cache.ignored()
    if not marked:
        return []
    index = {os.path.realpath(p): i for i, p in enumerate(collection.files)}
    return [(index[a], index[b]) for a, b in marked if a in index and b in index]
