"""Clusterers: from a collection's distances to one partition per threshold.

Every clusterer works on a :class:`~mhc.metric.Metric` (so videos, gates, isometric
matching and combined evidence look the same to it), honours "not a duplicate" pairs,
and returns *joins* (see :mod:`mhc.precision`) from which the partitions follow. Which
options each honours is declared in :data:`mhc.options.HONOURED`; others are refused
before hashing.

- :class:`SweepClusterer`: links within each threshold of a sweep; single linkage (a
  minimum spanning forest carries every threshold), optionally capped, verified by SSIM,
  or complete linkage.
- :class:`HdbscanClusterer`: density clustering (scikit-learn), images and videos apart.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from .algorithms import Algorithm
from .errors import UsageError
from .events import Progress
from .metric import BIG, CombinedMetric, HashMetric, MatchOptions, Metric
from .pairs import Edges
from .precision import apart, capped_joins, complete_joins, filtered, ssim_filter
from .suggest import Suggestion, suggest_threshold
from .sweep import Partition, spanning_forest, sweep

HDBSCAN_MAX_FILES = 50_000
COMBINED_THRESHOLDS = [25, 50, 75, 100]


@dataclass
class Clustering:
    """The partitions one clusterer made of a collection: one per threshold, plus what the
    output and the report need (folder names, hashes, the metric for distances)."""

    key: str  # its folder in the output: phash_8, combined_phash_16-30_dhash_16-40
    algorithm: Algorithm | None  # None for combined evidence
    unit: Literal["bits", "%"]
    max_distance: int  # bits of the hash, or 100 (%)
    thresholds: list[int]
    partitions: list[Partition]
    joins: Edges  # partition at t = components of the joins with d <= t
    hexes: list[str]  # each file's hash (the first algorithm's for combined evidence)
    settings: dict = field(default_factory=dict)  # the options that shaped it (for summary.json)
    suggestion: Suggestion | None = None
    method: Literal["sweep", "hdbscan"] = "sweep"
    metric: Metric | None = None
    carried: bool = False  # recomputed for a folder an earlier run made, with its settings
    link_settings: tuple[str, bool, bool] | None = None  # (mode, relative, unclustered) of that folder

    def folder(self, p: Partition) -> str:
        """The threshold folder's name: ``thr_NNN_unclustered_U`` (or ``hdbscan_minN``)."""
        from .names import threshold_folder

        if self.method == "hdbscan":
            return f"hdbscan_min{self.settings.get('min_cluster_size', 2)}"
        return threshold_folder(p.threshold, len(p.unclustered), max(3, len(str(max(self.thresholds)))))

    def partition(self, threshold: int) -> Partition:
        return next(p for p in self.partitions if p.threshold == threshold)

    def first_distances(self, p: Partition) -> list[list[int]]:
        """Each cluster member's distance to the cluster's first file, as the metric
        measures it (isometric-aware, video-aware)."""
        if self.metric is None or not p.clusters:
            return [[] for _ in p.clusters]
        members = np.concatenate(p.clusters)
        firsts = np.repeat([int(c[0]) for c in p.clusters], [len(c) for c in p.clusters])
        d = self.metric.between(firsts, members)
        out, k = [], 0
        for c in p.clusters:
            out.append(d[k:k + len(c)].astype(int).tolist())
            k += len(c)
        return out


# -- the clusterers ---------------------------------------------------------------------
@dataclass
class SweepClusterer:
    """Links within each threshold; see the module docstring."""

    thresholds: list[int]
    linkage: Literal["single", "complete"] = "single"
    max_size: int | None = None
    verify: object | None = None  # an Edges -> Edges filter (SSIM), or None
    cannot_link: list[tuple[int, int]] = field(default_factory=list)
    forests: "ForestCache | None" = None  # spanning forests of earlier runs, by metric fingerprint
    seed: "tuple[Edges, np.ndarray] | None" = None  # an earlier forest and the rows new since (forest_seed)
    name = "sweep"

    def joins(self, metric: Metric, progress: Progress | None = None) -> Edges:
        top = max(self.thresholds)
        forest = self._forest(metric, top, progress)
        if self.linkage == "complete":
            top_partition = next(iter(sweep(metric.n, forest, [top])))
            return complete_joins(top_partition.clusters, self._distances(metric, top), self.max_size)
        if self.max_size or self.cannot_link:
            return capped_joins(forest, self.max_size, self.cannot_link)
        return forest

    def _forest(self, metric: Metric, top: int, progress: Progress | None) -> Edges:
        if self.verify is None and not self.cannot_link:
            def compute() -> Edges:
                if self.seed is not None:
                    return grown_forest(metric, top, *self.seed)
                return spanning_forest(metric.n, iter(metric.edges(top, progress)))
            if self.forests is not None and hasattr(metric, "fingerprint"):
                # the plain forest depends on the metric and the radius alone: a rerun on the same
                # hashes skips the pair search (the costliest step of a warm rerun at 100,000 files)
                return self.forests.get(metric.fingerprint(), top, compute, metric.n)
            return compute()
        blocks: Iterator[Edges] = iter(metric.edges(top, progress))
        if self.verify is not None:
            blocks = filtered(blocks, self.verify)
        extra: list[Edges] = []
        if self.cannot_link:
            # the other links of files in a "not a duplicate" pair are kept beside the forest,
            # so the constrained join can route around the pair
            blocks = _tap(blocks, self.cannot_link, extra)
        forest = spanning_forest(metric.n, blocks)
        return Edges.concat([forest, *extra]) if self.cannot_link else forest

    def _distances(self, metric: Metric, top: int):
        """Complete linkage needs every pair's distance: a link refused by verification or
        marked "not a duplicate" counts as farther than any threshold."""
        def dist(members: np.ndarray) -> np.ndarray:
            d = metric.matrix(members)
            if self.verify is not None:
                iu, ju = np.nonzero(np.triu(d <= top, k=1))
                cand = Edges(members[iu], members[ju], d[iu, ju].astype(np.int32))
                v = self.verify(cand) if len(cand) else cand
                kept = set(zip(v.i.tolist(), v.j.tolist()))
                for a, b in zip(iu.tolist(), ju.tolist()):
                    if (int(members[a]), int(members[b])) not in kept:
                        d[a, b] = d[b, a] = BIG
            return np.minimum(d, BIG)
        return apart(dist, self.cannot_link, BIG)


def grown_forest(metric: Metric, top: int, forest: Edges, new: np.ndarray, block: int = 1 << 22) -> Edges:
    """The spanning forest within ``top`` after rows ``new`` joined a set whose forest was
    ``forest``: every edge the new forest needs is in the old one or touches a new row
    (an old edge left out of the old forest is the longest of a cycle, which stays a
    cycle), so only new-row pairs are measured: O(new x n), not a pair search."""
    parts = [forest]
    everyone = np.arange(metric.n, dtype=np.int64)
    step = max(1, block // max(1, metric.n))
    for s in range(0, len(new), step):
        rows = new[s:s + step]
        i, j = np.repeat(rows, metric.n), np.tile(everyone, len(rows))
        d = metric.between(i, j)
        keep = (d <= top) & (i != j)
        i, j = i[keep], j[keep]
        parts.append(Edges(np.minimum(i, j), np.maximum(i, j), d[keep].astype(np.int32)))
    return spanning_forest(metric.n, iter(parts))


def forest_seed(previous: dict | None, key: str, metric: Metric, hexes: list[str], files: list[str],
                settings: dict, top: int, max_pairs: int = 50_000_000) -> "tuple[Edges, np.ndarray] | None":
    """The previous output's joins of ``key`` as a forest to grow (see :func:`grown_forest`),
    with this run's rows that are new: only when those joins were the plain spanning
    forest of the same metric (same settings, every old file still here with the same
    hash, images only) within at least ``top``, and the new rows are few."""
    entry = (previous or {}).get("algorithms", {}).get(key)
    if not entry or not entry.get("settings", {}).get("forest") or getattr(metric, "is_video", None) is None \
            or metric.is_video.any():
        return None
    old = dict(entry["settings"])
    if {k: v for k, v in old.items() if k != "thresholds"} != {k: v for k, v in settings.items() if k != "thresholds"} \
            or max(old.get("thresholds") or [-1]) < top:
        return None
    where = {f: i for i, f in enumerate(files)}
    mapping = np.empty(len(previous["files"]), dtype=np.int64)
    for j, (f, hx) in enumerate(zip(previous["files"], entry["hashes"])):
        i = where.get(f)
        if i is None or hexes[i] != hx:
            return None  # a file gone or changed: its forest edges may need replacing
        mapping[j] = i
    new = np.setdiff1d(np.arange(len(files)), mapping)
    if len(new) * len(files) > max_pairs:
        return None
    joins = entry["joins"]
    i, j = mapping[np.asarray(joins["i"], dtype=np.int64)], mapping[np.asarray(joins["j"], dtype=np.int64)]
    d = np.asarray(joins["d"], dtype=np.int32)
    keep = d <= top
    return Edges(np.minimum(i, j)[keep], np.maximum(i, j)[keep], d[keep]), new


@dataclass
class HdbscanClusterer:
    """Density clustering over Hamming distances (scikit-learn's HDBSCAN); noise is
    unclustered. Images and videos are clustered apart (videos by the metric's gated
    distances); "not a duplicate" pairs are split apart afterwards."""

    min_size: int = 2
    cannot_link: list[tuple[int, int]] = field(default_factory=list)
    name = "hdbscan"

    def joins(self, metric: HashMetric, progress: Progress | None = None) -> Edges:
        from sklearn.cluster import HDBSCAN  # installed: checked by validate()

        if metric.n > HDBSCAN_MAX_FILES:
            raise UsageError(f"--method hdbscan on {metric.n:,} files: its cost grows with the square of the "
                             f"files; it is limited to {HDBSCAN_MAX_FILES:,}. Use the sweep beyond.")
        clusters: list[np.ndarray] = []
        img, vid = np.flatnonzero(~metric.is_video), np.flatnonzero(metric.is_video)
        excluded = getattr(metric, "excluded", None)
        if excluded is not None:
            img = img[~excluded[img]]  # too flat to hash reliably (PDQ): noise, never clustered
        if len(img) >= 2:
            bits = np.unpackbits(metric.codes[img].view(np.uint8), axis=1)[:, : metric.max_distance].astype(bool)
            labels = HDBSCAN(min_cluster_size=self.min_size, min_samples=1, metric="hamming",
                             algorithm="balltree" if len(img) > 2000 else "brute", allow_single_cluster=True,
                             copy=True).fit_predict(bits)
            clusters += [img[labels == lab] for lab in np.unique(labels) if lab >= 0]
        if len(vid) >= 2:
            far = 4 * metric.max_distance  # gated pairs: far beyond any real distance
            d = np.minimum(metric.matrix(vid), far).astype(float)
            labels = HDBSCAN(min_cluster_size=self.min_size, min_samples=1, metric="precomputed",
                             allow_single_cluster=True, copy=True).fit_predict(d)
            clusters += [vid[labels == lab] for lab in np.unique(labels) if lab >= 0]
        parts = []
        for c in clusters:
            for piece in self._split(np.sort(c), metric):
                if len(piece) > 1:
                    parts.append(Edges(piece[:-1], piece[1:], np.zeros(len(piece) - 1, dtype=np.int32)))
        return Edges.concat(parts)

    def _split(self, members: np.ndarray, metric: Metric) -> list[np.ndarray]:
        """A cluster holding a "not a duplicate" pair is split along its weakest links."""
        inside = set(members.tolist())
        pairs = [(a, b) for a, b in self.cannot_link if a in inside and b in inside]
        if not pairs:
            return [members]
        d = metric.matrix(members)
        iu, ju = np.triu_indices(len(members), k=1)
        local = Edges(members[iu], members[ju], np.minimum(d[iu, ju], BIG).astype(np.int64))
        kept = capped_joins(spanning_forest(metric.n, [local]), None, pairs)
        return next(iter(sweep(metric.n, kept, [BIG]))).clusters  # only members have edges


def _tap(blocks: Iterable[Edges], pairs: list[tuple[int, int]], extra: list[Edges]) -> Iterator[Edges]:
    involved = np.array(sorted({x for pair in pairs for x in pair}), dtype=np.int64)
    for b in blocks:
        touch = np.isin(b.i, involved) | np.isin(b.j, involved)
        if touch.any():
            extra.append(Edges(b.i[touch], b.j[touch], b.d[touch]))
        yield b


class ForestCache:
    """Spanning forests of earlier runs, in a folder beside the hash cache (never in the
    output: a failed run must leave that untouched), as ``<fingerprint>-r<radius>.npz``.
    Content-addressed, so any output reuses them; the MAX_FILES used last are kept."""

    MAX_FILES = 32
    NAME = re.compile(r"^[0-9a-f]{32}-(r\d+|crops)\.npz(\.tmp)?$")

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def get(self, fingerprint: str, radius: int, compute, n: int) -> Edges:
        """The spanning forest of ``n`` files within ``radius``: stored, else ``compute()``'s."""
        def columns() -> dict[str, np.ndarray]:
            forest = compute()
            return {"i": forest.i, "j": forest.j, "d": forest.d}

        def whole(z: dict[str, np.ndarray]) -> bool:  # a forest of n files: at most n - 1 joins
            i, j, d = (z.get(k) for k in "ijd")
            if not all(isinstance(a, np.ndarray) and a.ndim == 1 and a.dtype.kind in "iu" for a in (i, j, d)):
                return False
            return len(i) == len(j) == len(d) < max(n, 1) and (not len(i) or (
                min(i.min(), j.min(), d.min()) >= 0 and max(i.max(), j.max()) < n and d.max() <= radius))

        z = self.arrays(f"{fingerprint}-r{radius}", columns, whole)
        return Edges(z["i"].astype(np.int64), z["j"].astype(np.int64), z["d"].astype(np.int64))

    def arrays(self, name: str, compute, whole=None) -> dict[str, np.ndarray]:
        """The arrays stored as ``name`` (a fingerprint and a suffix), else ``compute()``'s,
        stored for next time. ``whole(arrays)``: whether what was read is what was stored
        (the zip checks its bytes; this, that another program's file of the same name
        holds the arrays they are read as), else it is computed again."""
        path = self.folder / f"{name}.npz"
        try:
            with np.load(path) as z:
                found = {k: z[k] for k in z.files}
            if whole is None or whole(found):
                os.utime(path)  # recently used: kept by prune()
                return found
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
            pass  # absent or unreadable (cut short, a damaged block: the zip says so): compute it
        found = compute()
        # Zipped in memory, then written: NumPy 2.0 (and older) left its zip open when the write
        # failed (a full disk), and its finaliser later printed a traceback on stderr.
        packed = io.BytesIO()
        np.savez(packed, **found)
        tmp = path.with_name(path.name + ".tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(packed.getbuffer())
            os.replace(tmp, path)
            self.prune()
        except OSError:  # a cache that cannot be written only costs the next run time
            with contextlib.suppress(OSError):
                tmp.unlink()  # (not left cut short on a full disk)
        return found

    def prune(self) -> None:
        """Remove all but the MAX_FILES most recently used forests (only files named as
        this class names them)."""
        try:
            ours = [e for e in os.scandir(self.folder) if self.NAME.match(e.name) and e.is_file(follow_symlinks=False)]
        except OSError:
            return
        ours.sort(key=lambda e: e.stat().st_mtime_ns, reverse=True)
        for e in ours[self.MAX_FILES:]:
            with contextlib.suppress(OSError):
                os.unlink(e.path)


# -- from a collection ----------------------------------------------------------------------
def sweep_algorithm(collection, algo: Algorithm, thresholds: Iterable[int] | None = None, *,
                    linkage: Literal["single", "complete"] = "single", max_cluster_size: int | None = None,
                    verify: float | None = None, isometric: bool = False, match: MatchOptions = MatchOptions(),
                    cannot_link: list[tuple[int, int]] = (), progress: Progress | None = None,
                    forests: ForestCache | None = None, previous: dict | None = None,
                    crops: bool = False) -> Clustering:
    """Threshold sweep of one algorithm over a :class:`~mhc.collection.HashedCollection`.
    ``verify``: SSIM threshold (the collection must hold SSIM thumbnails); ``forests``:
    where spanning forests of earlier runs are kept (reused when the hashes are the same);
    ``previous``: the summary of the output's last run, whose forest is grown when files
    were only added (:func:`forest_seed`); ``crops``: confirmed crops and copies
    (:mod:`mhc.crops`) link at distance 0."""
    from .thresholds import default_thresholds

    ts = sorted(set(thresholds)) if thresholds is not None else default_thresholds(algo)
    metric = collection.metric(algo, match, isometric=isometric, crops=crops)
    check = None
    if verify is not None:
        if not collection.ssim:
            raise UsageError("SSIM verification needs the SSIM thumbnails: hash with verify='ssim'")
        # a crop's squeezed thumbnail is not like its source's: its pixels were checked already
        check = ssim_filter(collection.ssim, verify, isometric, exempt=metric.links)
    codes = collection.codes(algo)
    settings = {"thresholds": ts, "linkage": linkage, "max_cluster_size": max_cluster_size, "verify": verify,
                "isometric": isometric, "cross_media": match.cross_media, "video_match": match.video_match,
                "duration_tolerance": match.duration_tolerance, "crops": crops,
                # the joins are the plain spanning forest: a later run may grow it (forest_seed)
                "forest": linkage == "single" and not max_cluster_size and verify is None and not cannot_link}
    # crop links depend on every picture: a grown forest would miss those of old files
    seed = forest_seed(previous, algo.key, metric, codes.hexes, collection.files, settings, max(ts)) \
        if settings["forest"] and not crops else None
    clusterer = SweepClusterer(ts, linkage, max_cluster_size, check, list(cannot_link), forests, seed)
    joins = clusterer.joins(metric, progress)
    partitions = list(sweep(metric.n, joins, ts))
    return Clustering(algo.key, algo, "bits", algo.bits, ts, partitions, joins.sorted(), codes.hexes, settings,
                      suggest_threshold(metric.n, joins, partitions), metric=metric)


def hdbscan_algorithm(collection, algo: Algorithm, *, min_cluster_size: int = 2, match: MatchOptions = MatchOptions(),
                      cannot_link: list[tuple[int, int]] = ()) -> Clustering:
    """HDBSCAN of one algorithm, written as ``<algo>/hdbscan_minN/``."""
    metric = collection.metric(algo, match)
    joins = HdbscanClusterer(min_cluster_size, list(cannot_link)).joins(metric)
    return Clustering(algo.key, algo, "bits", algo.bits, [0], list(sweep(metric.n, joins, [0])), joins,
                      collection.codes(algo).hexes, {"min_cluster_size": min_cluster_size}, None, "hdbscan",
                      metric)


def combined_evidence(collection, required: list[tuple[Algorithm, int]], *, linkage="single",
                      max_cluster_size: int | None = None, verify: float | None = None, isometric: bool = False,
                      match: MatchOptions = MatchOptions(), cannot_link: list[tuple[int, int]] = (),
                      progress: Progress | None = None, crops: bool = False) -> Clustering:
    """Links only where every algorithm agrees within its threshold; swept at 25/50/75/100 %
    of the thresholds, written as ``combined_<algo>-<bits>_.../``. ``crops``: confirmed crops
    and copies link at 0 % (their pixels agree, whatever any hash says)."""
    parts = [(collection.metric(a, match, isometric=isometric, crops=crops), t) for a, t in required]
    metric = CombinedMetric(parts)
    check = None
    if verify is not None:  # as in sweep_algorithm: a confirmed crop's pixels were checked already
        check = ssim_filter(collection.ssim, verify, isometric, exempt=parts[0][0].links)
    joins = SweepClusterer(COMBINED_THRESHOLDS, linkage, max_cluster_size, check, list(cannot_link)).joins(
        metric, progress)
    key = "combined_" + "_".join(f"{a.key}-{t}" for a, t in required)
    settings = {"require": [f"{a.key}:{t}" for a, t in required], "linkage": linkage,
                "max_cluster_size": max_cluster_size, "verify": verify, "isometric": isometric, "crops": crops}
    partitions = list(sweep(metric.n, joins, COMBINED_THRESHOLDS))
    return Clustering(key, None, "%", 100, COMBINED_THRESHOLDS, partitions, joins.sorted(),
                      collection.codes(required[0][0]).hexes, settings,
                      suggest_threshold(metric.n, joins, partitions, "%"), metric=metric)
