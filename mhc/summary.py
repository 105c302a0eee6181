"""``summary.json``: what a run found and made, compact enough for a million files.

Per file (lists indexed like ``files``): its kind and facts (bytes, pixel size, format,
date taken, mtime). Per algorithm: each file's hash, the clustering's *joins* and, per
threshold, the counts, the folder name and a digest of the folder's content. Clusters are
not listed per threshold (that grew with files x thresholds): the clusters at threshold
``t`` are the connected components of the joins with ``d <= t`` (at most one join per
file), which :func:`clusters` and :func:`partitions` rebuild::

    >>> from mhc.summary import read_summary, clusters
    >>> s = read_summary("data/output")
    >>> clusters(s, "phash_8", 8)[0]          # the largest cluster at threshold 8: its paths
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from . import __version__
from .errors import MhcError
from .pairs import Edges
from .sweep import Partition, sweep

FORMAT = 2


def read_summary(output: str | Path) -> dict:
    """The summary of an mhc output folder (raises :class:`MhcError` if there is none)."""
    path = Path(output) / "summary.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MhcError(f"{output} has no summary.json; it is not an mhc output folder (run mhc -o {output})") from None
    except (OSError, ValueError) as e:
        raise MhcError(f"cannot read {path} ({e}); run mhc again to rewrite it") from None
    if doc.get("format") != FORMAT:
        raise MhcError(f"{path} was written by another version of mhc (format {doc.get('format', 1)}); run mhc "
                       f"again on this output to rewrite it")
    return doc


def joins_of(entry: dict) -> Edges:
    j = entry["joins"]
    return Edges(np.asarray(j["i"], dtype=np.int64), np.asarray(j["j"], dtype=np.int64),
                 np.asarray(j["d"], dtype=np.int64))


def partitions(summary: dict, key: str) -> list[Partition]:
    """Every threshold's partition of one algorithm's folder, rebuilt from its joins."""
    entry = summary["algorithms"][key]
    ts = [t["threshold"] for t in entry["thresholds"]]
    return list(sweep(len(summary["files"]), joins_of(entry), ts))


def clusters(summary: dict, key: str, threshold: int) -> list[list[str]]:
    """The clusters (file paths, largest first) of one threshold folder."""
    files = summary["files"]
    p = next(p for p in partitions(summary, key) if p.threshold == threshold)
    return [[files[i] for i in c] for c in p.clusters]


def original_ranks(summary: dict) -> list[int]:
    """Each file's rank as a probable original (0 = most likely): the largest picture first,
    then the least compressed (most bytes per pixel), then the oldest (date taken, else
    mtime), then the path. The probable original of a cluster is its member of lowest rank
    (as czkawka and dupeGuru choose the file to keep)."""
    from .identity import original_key

    info = summary.get("file_info") or {}
    files = summary["files"]
    n = len(files)
    col = lambda k: info.get(k) or [None] * n  # noqa: E731
    w, h, b, taken, mtime = col("width"), col("height"), col("bytes"), col("taken"), col("mtime")
    order = sorted(range(n), key=lambda i: original_key(w[i], h[i], b[i], taken[i], mtime[i], files[i]))
    rank = [0] * n
    for r, i in enumerate(order):
        rank[i] = r
    return rank


def algorithm_entry(c, links_settings, digests: list[str | None], computed: bool) -> dict:
    """The summary entry of one :class:`~mhc.clustering.Clustering`."""
    a = c.algorithm
    entries = []
    for p, digest in zip(c.partitions, digests):
        entries.append({
            "threshold": p.threshold, "folder": c.folder(p), "clusters": len(p.clusters),
            "clustered_files": p.clustered_files, "largest": p.largest, "unclustered": len(p.unclustered),
            "written": p.changed or not links_settings.changed_only, "digest": digest,
        })
    return {
        "name": a.name if a else "combined", "size": a.size if a else 0, "bits": c.max_distance, "unit": c.unit,
        "method": c.method, "settings": _plain(c.settings), "computed_now": computed,
        "link": links_settings.mode, "relative_links": links_settings.relative,
        "unclustered_links": links_settings.unclustered,
        "hashes": c.hexes,
        "joins": {"i": c.joins.i.tolist(), "j": c.joins.j.tolist(), "d": [int(x) for x in c.joins.d]},
        "suggested": c.suggestion.to_dict() if c.suggestion else None,
        "too_flat": too_flat(c),
        "thresholds": entries,
    }


def too_flat(c) -> list[int]:
    """Files whose hash is too unreliable to link (PDQ quality 0: flat), by index."""
    excluded = getattr(c.metric, "excluded", None)
    return [] if excluded is None else [int(k) for k in np.flatnonzero(excluded)]


def summary_dict(result, algorithms: dict[str, dict]) -> dict:
    """``summary.json`` of a :class:`~mhc.pipeline.RunResult` (``algorithms``: the entries
    made by :func:`algorithm_entry`, in output order)."""
    col = result.collection
    s = col.stats
    info = col.info
    opts = {k: _plain(v) for k, v in asdict(result.options).items()}
    doc = {
        "mhc_version": __version__,
        "format": FORMAT,
        "input": result.input,
        "output": result.output,
        "cache": str(result.options.cache_path()) if result.options.cache_path() else None,
        "options": opts,
        "counts": {
            "found": col.found, "images": len(col.files) - col.videos, "videos": col.videos,
            "decoded": s.decoded, "from_cache": s.cached, "failed": len(col.errors),
            "hashes_computed": s.computed_by_algo, "hashes_from_cache": s.cached_by_algo,
        },
        "files": col.files,
        "kinds": col.kinds,
        "file_info": {
            "bytes": col.sizes, "mtime": col.mtimes, "width": [i.width for i in info],
            "height": [i.height for i in info], "format": [i.format for i in info], "taken": [i.taken for i in info],
        },
        "recommended": result.recommendation.to_dict() if result.recommendation else None,
        "computed_now": [k for k, e in algorithms.items() if e["computed_now"]],
        "carried_over": [k for k, e in algorithms.items() if not e["computed_now"]],
        "algorithms": algorithms,
    }
    doc["file_info"]["original_rank"] = original_ranks(doc)
    if result.options.crops:
        doc["file_info"]["crop_of"] = crop_of(col)
    return doc


def crop_of(collection) -> list[list | None]:
    """Per file, ``[source index, share of the source's area]`` when it was confirmed as a
    crop of another file (:mod:`mhc.crops`; the largest such share), else None."""
    out: list[list | None] = [None] * len(collection.files)
    for m in collection.crop_matches:
        if m.is_crop and (out[m.inner] is None or m.area > out[m.inner][1]):
            out[m.inner] = [m.outer, round(m.area, 3)]
    return out


def _plain(v):
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def write_json(path: Path, data: dict) -> None:
    """Compact JSON (a summary of a million files must be quick to write and read). ASCII
    only: a name that is not UTF-8 is kept as ``\\udcXX`` escapes, which ``json.loads``
    and ``os.fsencode`` turn back into its bytes."""
    # dumps, not dump: only the one-shot encoder is the C one (dump streams through the
    # pure-Python encoder: 4.4 s instead of ~1 s for the summary of 100,000 files)
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    with open(path, "w", encoding="ascii") as f:
        f.write(text)
        f.write("\n")
