"""The hashed collection: the one output of hashing and the input of every clusterer.

>>> import mhc
>>> collection = mhc.hash_folder("data/images", ["phash_8"])
>>> for a, b, distance in collection.pairs("phash_8", 8): ...
>>> clustering = collection.sweep("phash_8", range(0, 20))
>>> clustering.partitions[8].clusters[0]             # indices into collection.files
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import numbers
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .algorithms import Algorithm, parse_algorithm
from .cache import FileInfo, HashCache
from .decode import GONE, UNREADABLE
from .discover import Discovery, Kind, discover, disk_tops, gone_disks
from .errors import FAILING, EnvironmentFault, FileError, MhcError, UsageError, disk_fault, mount_point, printable
from .events import Progress, report
from .hashing import HashPlan
from .metric import HashMetric, MatchOptions, video_codes
from .options import Options, RunPlan, validate
from .pairs import pack
from .runner import HashResults, HashStats, compute_hashes
from .dask_exec import dask_executor

log = logging.getLogger(__name__)

SEARCHED = ".jpg .jpeg .png .bmp .gif .tif .tiff .webp .heic .avif .mp4 .mov .mkv .avi .webm ..."


@dataclass
class AlgorithmCodes:
    """One algorithm's hashes of every file, ready for pair search."""

    algorithm: Algorithm
    codes: np.ndarray  # (n, words) uint64; a video's row is the per-bit majority of its frames
    frames: dict[int, np.ndarray]  # video index -> (frames, words)
    variants: np.ndarray | None = None  # (n, 8, words): each image's 8 rotations/mirrors
    too_flat: np.ndarray | None = None  # (n,) bool: PDQ quality too low (a flat image): never linked

    @functools.cached_property
    def hexes(self) -> list[str]:
        """Each file's hash as imagehash's hex string (a video's: its majority hash)."""
        nbytes = self.algorithm.nbytes
        raw = self.codes.view(np.uint8)[:, :nbytes]
        if self.algorithm.bits % 8 == 0:
            # whole bytes: the hex string is the bytes' hex (one call for all files; a call
            # per file took 0.35 s at 100,000 files)
            text, w = np.ascontiguousarray(raw).tobytes().hex(), 2 * nbytes
            return [text[k:k + w] for k in range(0, len(text), w)]
        return [self.algorithm.to_hex(row.tobytes()) for row in raw]


class Pair(NamedTuple):
    a: str
    b: str
    distance: int


@dataclass
class HashedCollection:
    """Every usable file of a folder, sorted, with its hashes per algorithm and what the
    clusterers need besides (SSIM thumbnails, video metadata); the files that failed."""

    root: str
    files: list[str]
    kinds: list[Kind]
    errors: list[FileError]
    stats: HashStats
    found: int  # media files found, the failed ones included
    algorithms: dict[str, AlgorithmCodes]
    info: list[FileInfo]
    video_meta: dict[int, dict]
    ssim: dict[int, np.ndarray]  # image index -> 64x64 grey, when hashed for --verify
    sizes: list[int]  # bytes of each file
    mtimes: list[int]  # each file's mtime, in ns
    crop_features: dict[int, bytes] = dataclasses.field(default_factory=dict)  # image index -> mhc.crops features
    # where confirmed crops are kept between runs (content-addressed: the forests' folder)
    match_cache: object | None = None
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)  # files not media by name, per extension
    excluded: int = 0  # files and folders left out by --exclude
    aliases: dict[str, str] = dataclasses.field(default_factory=dict)  # a symlink -> the file's path listed instead
    # per file, the index of an earlier listed name of the same file (a hard link), else None
    same_file_as: list[int | None] = dataclasses.field(default_factory=list)

    @functools.cached_property
    def crop_matches(self) -> list:
        """Confirmed crops and copies among the images (:mod:`mhc.crops`), found once per
        collection; empty unless hashed with ``crops=True``."""
        from .crops import find_matches

        if not self.crop_features:
            return []
        widths, heights = [i.width or 0 for i in self.info], [i.height or 0 for i in self.info]
        if self.match_cache is None:
            return find_matches(self.crop_features, widths, heights)
        from .crops import arrays_whole, from_arrays, matches_fingerprint, to_arrays

        key = matches_fingerprint(self.crop_features, widths, heights)
        compute = lambda: to_arrays(find_matches(self.crop_features, widths, heights))  # noqa: E731
        return from_arrays(self.match_cache.arrays(f"{key}-crops", compute,
                                                   lambda z: arrays_whole(z, len(self.files))))

    @property
    def videos(self) -> int:
        return sum(1 for k in self.kinds if k == "video")

    @property
    def disk_errors(self) -> list[FileError]:
        """The files of :attr:`errors` that failed through their disk's fault (an I/O error,
        a driver or share gone), not their content: part of the work that failed (the command
        line's exit status 1); never cached, so tried again on the next run."""
        return [e for e in self.errors if disk_fault(e.reason)]

    def codes(self, algo: str | Algorithm) -> AlgorithmCodes:
        key = algo.key if isinstance(algo, Algorithm) else parse_algorithm(algo).key
        if key not in self.algorithms:
            raise UsageError(f"{key} was not hashed in this collection (it has {', '.join(self.algorithms)})")
        return self.algorithms[key]

    def metric(self, algo: str | Algorithm, match: MatchOptions = MatchOptions(), *,
               isometric: bool = False, crops: bool = False) -> HashMetric:
        """The distances of one algorithm over this collection (see :mod:`mhc.metric`);
        with ``crops``, confirmed crops and copies are at distance 0."""
        c = self.codes(algo)
        if isometric and c.variants is None:
            raise UsageError("isometric distances need the rotated/mirrored hashes: hash with isometric=True")
        if crops and not self.crop_features and "image" in self.kinds:
            raise UsageError("crop matching needs the crop features: hash with crops=True")
        links = None
        if crops:
            from .pairs import Edges

            m = self.crop_matches
            i = np.array([x.outer for x in m], dtype=np.int64)
            j = np.array([x.inner for x in m], dtype=np.int64)
            links = Edges(np.minimum(i, j), np.maximum(i, j), np.zeros(len(m), dtype=np.int32)).least()
        return HashMetric(c.codes, c.algorithm.bits, np.array([k == "video" for k in self.kinds], dtype=bool),
                          c.frames, self.video_meta, match, c.variants if isometric else None, c.algorithm.key,
                          excluded=c.too_flat, links=links)

    def facts(self, i: int) -> dict:
        """What is known of file ``i``: pixels, bytes, format, date taken (EXIF) and mtime."""
        info = self.info[i]
        return {"width": info.width, "height": info.height, "bytes": self.sizes[i], "format": info.format,
                "taken": info.taken, "mtime_ns": self.mtimes[i]}

    def same_file(self, i: int, j: int) -> bool:
        """Whether files ``i`` and ``j`` are names of one file (hard links): removing one
        frees no space."""
        if not self.same_file_as:
            return i == j
        return (self.same_file_as[i] if self.same_file_as[i] is not None else i) == \
            (self.same_file_as[j] if self.same_file_as[j] is not None else j)

    def probable_original(self, members: list[int]) -> int:
        """The member most likely the original (:func:`mhc.identity.original_key`)."""
        from .identity import original_key

        return min(members, key=lambda i: original_key(self.info[i].width, self.info[i].height, self.sizes[i],
                                                        self.info[i].taken, self.mtimes[i], self.files[i]))

    def pairs(self, algo: str | Algorithm, threshold: int, *, isometric: bool = False,
              match: MatchOptions = MatchOptions(), crops: bool = False) -> list[Pair]:
        """Every pair of files within ``threshold`` bits (or a string: ``"10"``, ``"10%"`` of
        the hash's bits), each once, closest first (with ``crops``, confirmed crops and copies
        at distance 0)."""
        if isinstance(threshold, str):  # as -t takes it
            from .thresholds import one_threshold

            threshold = one_threshold(threshold, self.codes(algo).algorithm)
        m = self.metric(algo, match, isometric=isometric, crops=crops)
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Integral):  # 10.5 listed as 10 did
            raise UsageError(f"the threshold is a whole number of bits (or a string such as '10%'), not "
                             f"{threshold!r}")
        if not 0 <= threshold <= m.max_distance:
            raise UsageError(f"the threshold must be 0 to {m.max_distance} bits for {self.codes(algo).algorithm.key}, "
                             f"not {threshold}")
        _check_room_for_pairs(self.codes(algo), threshold)
        e = m.edges_within(threshold)
        return [Pair(self.files[i], self.files[j], d) for i, j, d in zip(e.i.tolist(), e.j.tolist(), e.d.tolist())]

    def sweep(self, algo: str | Algorithm, thresholds: Iterable[int] | None = None, **settings):
        """Cluster one algorithm at each threshold (single linkage by default); the keyword
        arguments are those of :func:`mhc.clustering.sweep_algorithm`. Returns a
        :class:`~mhc.clustering.Clustering` whose ``partitions`` hold one
        :class:`~mhc.sweep.Partition` per threshold."""
        from .clustering import sweep_algorithm
        from .thresholds import parse_thresholds

        a = self.codes(algo).algorithm
        if isinstance(thresholds, str):  # the command line's "0:20:2" or "0%:30%:2%"
            thresholds = parse_thresholds(thresholds, a)
        elif thresholds is not None:
            thresholds = list(thresholds)
            bad = [t for t in thresholds if isinstance(t, bool) or not isinstance(t, numbers.Integral)
                   or not 0 <= t <= a.bits]
            if bad or not thresholds:
                raise UsageError(f"thresholds for {a.key} are whole numbers of bits from 0 to {a.bits} (or a string "
                                 f"such as '0:20:2'), not {repr(bad[0]) if bad else 'an empty list'}")
            thresholds = [int(t) for t in thresholds]
        return sweep_algorithm(self, a, thresholds, **settings)


# memory per listed pair: the search's arrays, their sort and the Pair. Measured with `mhc
# pairs` on 100,000 files (peak RSS over a listing of 8 pairs): 84-198 bytes at 0.5-19.5
# million pairs, CSV or JSON (docs/benchmarks.md)
PAIR_BYTES = 250


def _check_room_for_pairs(c: AlgorithmCodes, threshold: int, sample: int = 256) -> None:
    """Refuse a threshold whose pairs would not fit in memory, before listing them: a
    listing has every pair at once (closest first), and far past where copies lie a
    threshold takes in a large share of all n(n-1)/2 pairs (-t 24 of 64 bits on 100,000
    files: ~250,000,000). Estimated from the neighbours of a sample of files."""
    n = len(c.codes)
    if n * (n - 1) // 2 * PAIR_BYTES < 2**30:  # every pair fits in 1 GiB: nothing to check
        return
    from .memory import available_memory
    from .pairs import cross_distances

    sample = max(32, min(sample, 25_600_000 // n))  # ~0.1 s: at 1,000,000 files 32 rows, not 256 (1.2 s)
    rows = np.random.default_rng(0).choice(n, size=min(sample, n), replace=False)
    near = sum(int((cross_distances(c.codes[rows[k:k + 32]], c.codes) <= threshold).sum()) - len(rows[k:k + 32])
               for k in range(0, len(rows), 32))
    estimate = near / len(rows) * n / 2
    room = available_memory()
    if room is not None and estimate * PAIR_BYTES > room * 0.8:
        raise UsageError(f"about {estimate:,.0f} pairs of files lie within {threshold} bits for {c.algorithm.key} "
                         f"(some {estimate * PAIR_BYTES / 2**30:.0f} GiB to list them, {room / 2**30:.1f} GiB free): "
                         f"that is far past where copies lie; choose a lower threshold (the sweep's suggestion, "
                         f"or see docs/benchmarks.md)")


def hash_folder(folder: str | Path, algorithms: Iterable[str] | None = None, *, progress: Progress | None = None,
                executor: Executor | None = None, **options) -> HashedCollection:
    """Hash every image and video under ``folder`` (cached) with ``algorithms`` (default:
    phash_8 ahash_8 dhash_8 whash_8 phash_16). Other keyword arguments are
    :class:`~mhc.options.Options` fields (``cache``, ``workers``, ``isometric``, ``frames``...).
    One name may be given as a string (``"phash_8"`` or ``"phash_8,dhash_8"``)."""
    if isinstance(algorithms, str):  # hash_folder(f, "phash_8"): one name (or "phash_8,dhash_8"), not its letters
        algorithms = [algorithms]
    try:
        opts = Options(input=Path(folder), algorithms=list(algorithms or []), **options)
    except TypeError as e:
        raise UsageError(f"hash_folder: {e}") from None
    return collect(validate(opts, outputs=False), progress=progress, executor=executor)


def collect(plan: RunPlan, *, progress: Progress | None = None, executor: Executor | None = None,
            found: Discovery | None = None, hplan: HashPlan | None = None, for_run: bool = False) -> HashedCollection:
    """Discover and hash the files of a validated run (``hplan``: hash more than the run's
    own algorithms, e.g. those of folders kept from earlier runs). Raises EnvironmentFault
    when the input's disk went away during the hashing (``for_run``: say that the output
    was left as it was)."""
    o = plan.options
    found = found or find_media(plan, progress)
    hplan = hplan or hash_plan(plan)
    tops = disk_tops(plan.input, found.files)
    with open_cache(plan) as cache, dask_executor(o.dask, executor) as ex:
        results = compute_hashes(found.files, hplan, cache, workers=o.workers, executor=ex, progress=progress,
                                 file_timeout=o.file_timeout)
        if hplan.thumb_dir is not None and plan.output is not None:  # (a run that makes a report)
            cache.remember_output(str(plan.output))
        if not o.exclude:  # files left out by --exclude are not gone: their hashes stay
            cache.forget_missing(str(plan.input), [f.path for f in found.files])
    _check_disks_stayed(tops, results.errors, plan, for_run)
    _check_some_read(found.errors + results.errors, bool(results.values), plan, for_run)
    return build(plan, found, results, hplan)


def _check_disks_stayed(tops: dict[str, tuple[int, int]], errors: list[FileError], plan: RunPlan,
                        for_run: bool) -> None:
    """Files that "disappeared" or could not be read because their disk went away during the
    hashing (a USB disk unplugged, a network share dropped, a FUSE driver killed, the input
    folder moved) would make a collection, and a run's tree, of the files read before, with
    nothing to say it is not whole: refused."""
    lost = sum(e.reason == GONE or e.reason.startswith(UNREADABLE) for e in errors)
    went = gone_disks(tops) if lost else {}
    if went:
        folder, what = next(iter(went.items()))
        where = "the input folder" if folder == str(plan.input) else "the disk mounted at"
        done = "the previous output is unchanged" if for_run else "the files read were not used"
        kept = " and the hashes computed are kept in the cache" if plan.cache is not None else ""
        said = f"{where} {printable(folder)} {what} during the run ({lost} file(s) could not be read after it went)"
        if what.startswith("reported read errors"):  # (a failing disk is as likely as an unplugged one)
            raise EnvironmentFault(f"{said}: {FAILING} ({done}{kept})")
        raise EnvironmentFault(f"{said}; {done}{kept}: run again once it is back")


def _check_some_read(errors: list[FileError], any_read: bool, plan: RunPlan, for_run: bool) -> None:
    """Not one file could be read, and their disk said why (I/O errors), while its folders
    still list (their blocks cached, or a disk that fails reading files first): a tree with
    nothing in it would replace the last good output, with exit status 0. Refused. (Some files
    read: the run goes on without the others, and says so: :attr:`HashedCollection.disk_errors`.)"""
    faults = [e for e in errors if disk_fault(e.reason)]
    if any_read or not faults:
        return
    e = faults[0]
    mount = mount_point(e.path)
    at = f" mounted at {printable(mount)}" if mount else ""
    done = "the previous output is unchanged" if for_run else "nothing was used"
    raise EnvironmentFault(f"none of the files could be read: the disk{at} reports errors ({len(faults)} file(s), "
                           f"e.g. {printable(e.path)}: {e.reason}; see dmesg): {FAILING} ({done})")


def find_media(plan: RunPlan, progress: Progress | None = None) -> Discovery:
    o = plan.options
    found = discover(plan.input, exclude=[plan.output], follow_symlinks=o.follow_symlinks, skip=o.exclude)
    unused = [g for g in o.exclude if not found.excluded[g]]
    if unused:  # a typo, or a pattern of another folder: said, not silently without effect
        log.warning("--exclude %s matched nothing in %s", " ".join(repr(g) for g in unused), o.input)
    if not found.files:
        n = sum(found.excluded.values())
        left_out = f"; {n} left out by --exclude {' '.join(o.exclude)}" if n else ""
        raise MhcError(f"no images or videos found in {o.input} (looked for {SEARCHED}{left_out}); "
                       f"pass -i/--input FOLDER with your media")
    report(progress, "scan", len(found.files), len(found.files))
    return found


def hash_plan(plan: RunPlan) -> HashPlan:
    o = plan.options
    return HashPlan.build(plan.hash_algorithms, exact=o.exact, max_pixels=o.max_pixels, frames=o.frames,
                          video_exact=o.video_exact, isometric=o.isometric, verify=plan.verify is not None,
                          crops=o.crops)


@contextmanager
def open_cache(plan: RunPlan) -> Iterator[HashCache]:
    """The run's cache: read-only for a dry run (nothing is created), in memory without one."""
    with HashCache(plan.cache, readonly=plan.options.dry_run) as cache:
        yield cache


def build(plan: RunPlan, found: Discovery, results: HashResults, hplan: HashPlan) -> HashedCollection:
    files = sorted(results.values)
    kind_of = {f.path: f.kind for f in found.files}
    kinds = [kind_of[p] for p in files]
    algorithms = {}
    for algo in hplan.algorithms:
        nbytes = algo.nbytes
        values = [results.values[p][hplan.hkey(algo, k)] for p, k in zip(files, kinds)]
        codes, frames = video_codes(values, kinds, nbytes)
        variants = None
        if hplan.isometric:
            variants = np.repeat(codes[:, None, :], 8, axis=1)
            for i, (p, k) in enumerate(zip(files, kinds)):
                if k == "image":
                    v = results.values[p][hplan.iso_key(algo)]
                    variants[i] = pack([v[s * nbytes:(s + 1) * nbytes] for s in range(8)])
        too_flat = None
        if algo.has_quality:
            from .pdq import MIN_QUALITY

            too_flat = np.array([k == "image" and results.values[p][hplan.quality_key(algo)][0] < MIN_QUALITY
                                 for p, k in zip(files, kinds)], dtype=bool)
        algorithms[algo.key] = AlgorithmCodes(algo, codes, frames, variants, too_flat)
    ssim = {}
    if hplan.verify:
        from .hashing import SSIM_SIDE

        ssim = {i: np.frombuffer(results.values[p][hplan.ssim_key()], np.uint8).reshape(SSIM_SIDE, SSIM_SIDE)
                for i, (p, k) in enumerate(zip(files, kinds)) if k == "image"}
    crop_features = {}
    if hplan.crops:
        crop_features = {i: results.values[p][hplan.crop_key()] for i, (p, k) in enumerate(zip(files, kinds))
                         if k == "image"}
    meta = {i: json.loads(results.values[p][hplan.meta_key()]) for i, (p, k) in enumerate(zip(files, kinds))
            if k == "video"}
    errors = sorted(found.errors + results.errors, key=lambda e: e.path)
    info = [results.info.get(p, FileInfo()) for p in files]
    stat = {f.path: (f.size, f.mtime_ns) for f in found.files}
    inode = {f.path: (f.dev, f.ino) for f in found.files}
    first: dict[tuple[int, int], int] = {}
    # inode 0: a file system without inode numbers, where (dev, ino) names no file
    same_file_as = [None if not inode[p][1] or first.setdefault(inode[p], i) == i else first[inode[p]]
                    for i, p in enumerate(files)]
    return HashedCollection(str(plan.input), files, kinds, errors, results.stats,
                            len(found.files) + len(found.errors), algorithms, info, meta, ssim,
                            [stat[p][0] for p in files], [stat[p][1] for p in files], crop_features,
                            skipped=dict(found.skipped), excluded=sum(found.excluded.values()),
                            aliases=dict(found.aliases), same_file_as=same_file_as)
