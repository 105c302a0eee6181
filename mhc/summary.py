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
import os
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np

from . import __version__
from .discover import MARKER, enclosing_output
from .errors import EnvironmentFault, MhcError, UsageError, printable, resource_fault
from .names import naming_for, recorded_link_names
from .pairs import Edges
from .summary_format import format_damage
from .sweep import Partition, sweep

FORMAT = 2


def read_summary(output: str | Path) -> dict:
    """The summary of an mhc output folder (raises :class:`MhcError` if there is none, or
    it is damaged, or an older mhc wrote it)."""
    doc = load(Path(output))
    if doc is None:  # not "run mhc -o X": X may be a folder of photos, which mhc would refuse to write in
        raise not_an_output(Path(output), "pass the folder an mhc run wrote (its -o/--output; data/output by default)")
    if doc.get("format") != FORMAT:
        raise MhcError(f"{Path(output) / 'summary.json'} was written by another version of mhc (format "
                       f"{doc.get('format', 1)}); run mhc again on this output to rewrite it")
    return doc


def link_originals(output: Path) -> dict[str, dict[str, str]]:
    """Per algorithm folder of an mhc output: each link's name -> the original it stands for
    (symlinks, hard links and copies alike, named as summary.json records)."""
    s = read_summary(output)
    return {key: dict(zip(recorded_link_names(s["files"], e), s["files"])) for key, e in s["algorithms"].items()}


def original_of(path: str) -> tuple[str, Path | None]:
    """The original a file in an mhc output's cluster folder stands for, and that output; a
    path outside every output is itself (None). A hard link or a copy there is a file of its
    own, which no run hashes: "not a duplicate" marks on it would never apply."""
    folder = Path(os.path.realpath(os.path.dirname(os.path.abspath(path))))
    owner = enclosing_output(folder)
    if owner is None:
        return path, None
    parts = folder.relative_to(owner).parts
    original = link_originals(owner).get(parts[0], {}).get(os.path.basename(path)) if len(parts) == 3 else None
    if original is None:
        raise UsageError(f"{printable(path)} is in the mhc output {printable(str(owner))} but is not one of its "
                         f"links; give your own files (the report's \"not a duplicate?\" command names them)")
    return original, owner


def not_an_output(output: Path, hint: str, why: str | None = None) -> UsageError:
    """The refusal of a folder the user named as an mhc output that is not one: ``why``
    (by default: it does not exist, is not a folder, or has no summary.json), then ``hint``."""
    if why is None:
        why = "does not exist" if not output.exists() else "is not a folder" if not output.is_dir() else \
            "has no summary.json"
        owner = enclosing_output(Path(os.path.realpath(output)).parent) if output.is_dir() else None
        if owner is not None:  # one of an output's own folders (-o out/phash_8): the output is meant
            return UsageError(f"{printable(str(output))} is a folder inside the mhc output folder "
                              f"{printable(str(owner))}; pass the output itself: -o {printable(str(owner))}")
    return UsageError(f"{printable(str(output))} {why}, so it is not an mhc output folder; {hint}")


class SummaryDamaged(UsageError):
    """A summary.json that cannot be used (see :func:`load`). ``marked``: the folder is an
    mhc output (its marker), so its folders cannot be told from the user's."""

    def __init__(self, output: Path, problem: str | None, marked: bool):
        self.problem, self.marked = problem, marked
        what = f"is damaged ({problem})" if problem else "is missing"
        super().__init__(
            f"{output / 'summary.json'} {what}, so mhc cannot tell which folders in {output} it made; run mhc "
            f"with a new --output (and delete {output} yourself if nothing in it is yours)" if marked else
            f"{output} has an unreadable summary.json ({problem}), so it is not an mhc output folder")


def load(output: Path) -> dict | None:
    """``output``'s summary.json, checked (see :func:`damage`); None where there is none and
    the folder holds no mhc folders (a new or empty output, or not an output at all). A
    summary that is missing beside mhc's folders, cut short or damaged is a
    :class:`SummaryDamaged`: it is what tells which folders mhc made."""
    path = output / "summary.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        if not _beyond_marker(output):
            return None
        problem = None
    except OSError as e:  # (a disk that stopped answering, no file descriptor left: said as such)
        raise resource_fault(e) or EnvironmentFault(f"cannot read {path} ({e.strerror}); make it readable, or run "
                                                    f"mhc with a new --output") from None
    except ValueError as e:  # not JSON, or not UTF-8
        problem = f"not JSON: {e}"
    else:
        problem = damage(doc)
        if problem is None:
            return doc
    raise SummaryDamaged(output, problem, (output / MARKER).is_file())


def _beyond_marker(output: Path) -> bool:
    """Whether a folder is an mhc output (its marker) holding more than a run keeps beside
    its summary: then a summary.json is missing, not yet to be written."""
    from .ownership import TOP_LEVEL_DIRS, TOP_LEVEL_FILES

    try:
        if not (output / MARKER).is_file():
            return False
        return any(e.name not in TOP_LEVEL_FILES | TOP_LEVEL_DIRS for e in os.scandir(output))
    except OSError:
        return False


def damage(doc) -> str | None:
    """What is wrong with a ``summary.json`` mhc will act on (a file in the output folder:
    a sync tool may cut it short, a hand may edit it), else None. Its algorithm keys and
    folder names become paths that mhc moves and replaces, so they must be plain names of
    mhc's shape (never ``../x``), and every index must point at a file."""
    from .ownership import TOP_LEVEL_DIRS, TOP_LEVEL_FILES

    if not isinstance(doc, dict):
        return "not a JSON object"
    algorithms = doc.get("algorithms")
    if not isinstance(algorithms, dict):
        return "no 'algorithms' object"
    for key in algorithms:
        if not _PLAIN_NAME.match(key) or key in TOP_LEVEL_DIRS | TOP_LEVEL_FILES:
            return f"{key!r} is not an algorithm folder's name"
    if doc.get("format") != FORMAT:
        return None  # an older mhc's: only its folder names are used (to replace them)
    files = doc.get("files")
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return "'files' is not a list of paths"
    n = len(files)
    if not isinstance(doc.get("input"), str):
        return "no 'input' path"
    if "\0" in doc["input"] or "\0" in "".join(files):  # (JSON's \u0000: no path holds it; os calls raise)
        return "a path holds a NUL character"
    if not _column(doc.get("kinds"), n, str):
        return "'kinds' does not hold one kind per file"
    info = doc.get("file_info", {})
    if not isinstance(info, dict) or not all(_column(v, n) for v in info.values()):
        return "'file_info' does not hold one value per file"
    for key, e in algorithms.items():
        problem = _entry_damage(e, n)
        if problem:
            return f"algorithm {key}: {problem}"
    return format_damage(doc, n)  # every other field mhc reads back, by type


_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*$")  # phash_8, combined_phash_16-30_dhash_16-40


def _column(values, n: int, kind: type | None = None) -> bool:
    return isinstance(values, list) and len(values) == n and (kind is None or all(isinstance(v, kind) for v in values))


def _entry_damage(e, n: int) -> str | None:
    from .ownership import THRESHOLD_FOLDER

    if not isinstance(e, dict) or not isinstance(e.get("settings"), dict) or not isinstance(e.get("method"), str):
        return "not an algorithm entry"
    if not isinstance(e.get("hashes"), list) or len(e["hashes"]) != n:
        return "'hashes' does not hold one hash per file"
    j = e.get("joins")
    if not isinstance(j, dict) or not all(isinstance(j.get(k), list) for k in "ijd"):
        return "no 'joins'"
    if not len(j["i"]) == len(j["j"]) == len(j["d"]) or not all(
            isinstance(x, int) and 0 <= x < n for x in j["i"] + j["j"]) or not all(
            isinstance(x, int) and x >= 0 for x in j["d"]):
        return "'joins' point at files that are not listed"
    ts = e.get("thresholds")
    if not isinstance(ts, list) or not all(
            isinstance(t, dict) and isinstance(t.get("threshold"), int) and isinstance(t.get("folder"), str)
            and THRESHOLD_FOLDER.match(t["folder"]) for t in ts):
        return "'thresholds' name a folder that is not a threshold folder"
    return None


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
        "unclustered_links": links_settings.unclustered, "link_names": naming_for(links_settings.mode),
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
        # absolute: `mhc pairs/ignore -o OUT` and the report's "not a duplicate?" command are
        # run from any folder (a relative --cache named another file there)
        "cache": os.path.abspath(result.options.cache_path()) if result.options.cache_path() else None,
        "options": opts,
        "counts": {
            "found": col.found, "images": len(col.files) - col.videos, "videos": col.videos,
            "decoded": s.decoded, "from_cache": s.cached, "failed": len(col.errors),
            "hashes_computed": s.computed_by_algo, "hashes_from_cache": s.cached_by_algo,
            "skipped": dict(sorted(col.skipped.items())), "excluded": col.excluded,
            "aliases": len(col.aliases), "hard_links": sum(j is not None for j in col.same_file_as),
        },
        "aliases": col.aliases,  # a symlink to a file also found by another path -> that path
        "files": col.files,
        "kinds": col.kinds,
        "file_info": {
            "bytes": col.sizes, "mtime": col.mtimes, "width": [i.width for i in info],
            "height": [i.height for i in info], "format": [i.format for i in info], "taken": [i.taken for i in info],
            # a hard link: the index of the first listed name of the same file (removing one frees nothing)
            "same_file_as": col.same_file_as or [None] * len(col.files),
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
