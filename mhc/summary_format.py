"""The fields of a format-2 ``summary.json`` that mhc reads back, with their types.

summary.json lies in the output folder, where a hand or a sync tool may change it, and the
rerun, ``mhc report``, ``mhc pairs`` and ``mhc evaluate`` act on it: a ``bits`` of ``"64"``
or a threshold entry without its ``unclustered`` count ended them with "mhc failed
unexpectedly" (a TypeError or KeyError, exit 70). :func:`format_damage` checks every field
they read before any of them runs. Fields later versions added are optional (an output of
an older mhc of the same format lacks them); unknown fields are allowed.

Hand-written rather than a JSON Schema: the checks that matter at scale are the per-file
columns, checked by type in one pass each (0.55 s for a million files of five algorithms:
nine columns of facts and five of hashes, while json.loads of it takes 1.4 s),
where the jsonschema package validates item by item through its own Python machinery, and
would add four packages for it.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import get_args

from .options import Linkage, LinkMode, Method, VideoMatch

NONE = type(None)
INT = (int,)
NUM = (int, float)
Check = Callable[[object, int], bool]  # (value, number of files) -> fine


def _of(*types: type) -> Check:
    return lambda v, n: isinstance(v, types) and not (isinstance(v, bool) and bool not in types)


def _natural(least: int = 0, *, none: bool = False) -> Check:
    return lambda v, n: (none and v is None) or (isinstance(v, int) and not isinstance(v, bool) and v >= least)


def _one_of(values) -> Check:
    return lambda v, n: isinstance(v, str) and v in values


def _list(item: Check) -> Check:
    return lambda v, n: isinstance(v, list) and all(item(x, n) for x in v)


def _column(*types: type) -> Check:
    """One value per file, each of ``types`` (the set of the column's types, built in C:
    a generator over a million values cost 50 ms a column)."""
    allowed = set(types)
    return lambda v, n: isinstance(v, list) and len(v) == n and set(map(type, v)) <= allowed


def _indexes(v, n: int) -> bool:
    """One file index or null per file."""
    if not (isinstance(v, list) and len(v) == n and set(map(type, v)) <= {int, NONE}):
        return False
    ints = [x for x in v if x is not None]
    return not ints or (min(ints) >= 0 and max(ints) < n)


def _index(v, n: int) -> bool:
    return v is None or (type(v) is int and 0 <= v < n)


def _hexes(v, n: int) -> bool:
    """One hash per file as hexadecimal text (the report measures distances from them)."""
    return (isinstance(v, list) and len(v) == n and set(map(type, v)) <= {str} and all(v)
            and _HEX.fullmatch("".join(v)) is not None)


_HEX = re.compile(r"[0-9a-fA-F]*")


def _map(value: Check) -> Check:
    return lambda v, n: isinstance(v, dict) and all(value(x, n) for x in v.values())


# a field: (name, check, what it must be); "?name": may be absent
Fields = list[tuple[str, Check, str]]

THRESHOLD: Fields = [
    ("threshold", _natural(), "a whole number of 0 or more"),
    ("clusters", _natural(), "a count"),
    ("clustered_files", _natural(), "a count"),
    ("largest", _natural(), "a count"),
    ("unclustered", _natural(), "a count"),
    ("?written", _of(bool), "true or false"),
    ("?digest", _of(str, NONE), "a text or null"),
]
SUGGESTION: Fields = [  # (the first format-2 mhc's had other fields beside these two)
    ("?threshold", _natural(), "a whole number of 0 or more"),
    ("?explanation", _of(str), "a text"),
    ("?persistent", _natural(), "a whole number of 0 or more"),
    ("?chaining", _natural(none=True), "a whole number or null"),
    ("?largest_before", _natural(), "a count"),
    ("?largest_after", _natural(), "a count"),
    ("?top_of_range", _of(bool), "true or false"),
    ("?own", _natural(none=True), "a whole number or null"),
    ("?agreement", _of(int, float, NONE), "a number or null"),
]
SETTINGS: Fields = [  # (which of them a folder needs depends on its method: see _settings_damage)
    ("?thresholds", lambda v, n: _list(_natural())(v, n) and bool(v), "a list of whole numbers of 0 or more"),
    ("?linkage", _one_of(get_args(Linkage)), f"one of {', '.join(get_args(Linkage))}"),
    ("?max_cluster_size", _natural(2, none=True), "a whole number of 2 or more, or null"),
    ("?verify", lambda v, n: v is None or (_of(int, float)(v, n) and -1 <= v <= 1), "an SSIM floor (-1 to 1) or null"),
    ("?isometric", _of(bool), "true or false"),
    ("?cross_media", _of(bool), "true or false"),
    ("?video_match", _one_of(get_args(VideoMatch)), f"one of {', '.join(get_args(VideoMatch))}"),
    ("?duration_tolerance", _of(int, float), "a number"),
    ("?crops", _of(bool), "true or false"),
    ("?forest", _of(bool), "true or false"),
    ("?require", _list(_of(str)), "a list of texts"),
    ("?min_cluster_size", _natural(2), "a whole number of 2 or more"),
]
ENTRY: Fields = [
    ("name", _of(str), "a text"),
    ("size", _natural(), "a whole number"),
    ("bits", _natural(1), "a whole number of 1 or more"),
    ("unit", _of(str), "a text"),
    ("method", _one_of(get_args(Method)), f"one of {', '.join(get_args(Method))}"),
    ("computed_now", _of(bool), "true or false"),
    ("hashes", _hexes, "one hexadecimal hash per file"),
    ("?link", _one_of(get_args(LinkMode)), f"one of {', '.join(get_args(LinkMode))}"),
    ("?relative_links", _of(bool), "true or false"),
    ("?unclustered_links", _of(bool), "true or false"),
    ("?link_names", _natural(), "a whole number"),
    ("?too_flat", lambda v, n: _list(_index)(v, n) and None not in v, "a list of file indexes"),
    ("?pages", _map(_of(str)), "an object of texts"),
]
FILE_INFO: Fields = [
    ("bytes", _column(int, NONE), "one size or null per file"),
    ("mtime", _column(int, NONE), "one time or null per file"),
    ("width", _column(int, NONE), "one width or null per file"),
    ("height", _column(int, NONE), "one height or null per file"),
    ("format", _column(str, NONE), "one text or null per file"),
    ("taken", _column(str, NONE), "one text or null per file"),
    ("?same_file_as", _indexes, "one file index or null per file"),
    ("?original_rank", _column(int), "one rank per file"),
    ("?thumb", _column(str, NONE), "one text or null per file"),
    ("?crop_of", lambda v, n: isinstance(v, list) and len(v) == n and all(
        x is None or (isinstance(x, list) and len(x) == 2 and _index(x[0], n) and x[0] is not None
                      and isinstance(x[1], (int, float))) for x in v), "one [file index, share] or null per file"),
]
RECOMMENDED: Fields = [
    ("key", _of(str), "a text"),
    ("threshold", _natural(), "a whole number of 0 or more"),
    ("?agreement", _of(int, float), "a number"),
    ("explanation", _of(str), "a text"),
]
TOP: Fields = [
    ("?cache", _of(str, NONE), "a text or null"),
    ("?options", _of(dict), "an object"),
    ("?counts", _map(lambda v, n: isinstance(v, (int, dict)) and not isinstance(v, bool)), "an object of counts"),
    ("?aliases", _map(_of(str)), "an object of paths"),
    ("?computed_now", _list(_of(str)), "a list of texts"),
    ("?carried_over", _list(_of(str)), "a list of texts"),
]


def _fields(doc: dict, fields: Fields, n: int, where: str) -> str | None:
    for name, check, what in fields:
        key = name.lstrip("?")
        if key not in doc:
            if name.startswith("?"):
                continue
            return f"{where}{key} is missing"
        if not check(doc[key], n):
            return f"{where}{key} is not {what}"
    return None


def format_damage(doc: dict, n: int) -> str | None:
    """What in a format-2 summary (its ``files``, ``kinds``, joins and folder names already
    checked: :func:`mhc.summary.damage`) is not of the type mhc wrote, else None. ``n``:
    the number of files."""
    problem = _fields(doc, TOP, n, "")
    info = doc.get("file_info", {})
    problem = problem or _fields(info, FILE_INFO, n, "file_info.")
    for key, e in doc["algorithms"].items():
        problem = problem or _fields(e, ENTRY, n, f"algorithms.{key}.") or \
            _fields(e["settings"], SETTINGS, n, f"algorithms.{key}.settings.") or _settings_damage(key, e)
        s = e.get("suggested")
        if problem is None and s is not None:
            problem = f"algorithms.{key}.suggested is not an object" if not isinstance(s, dict) else \
                _fields(s, SUGGESTION, n, f"algorithms.{key}.suggested.")
        for k, t in enumerate(e["thresholds"]):
            problem = problem or _fields(t, THRESHOLD, n, f"algorithms.{key}.thresholds[{k}].")
        if problem:
            return problem
    rec = doc.get("recommended")
    if rec is None:
        return None
    if not isinstance(rec, dict):
        return "recommended is not an object"
    problem = _fields(rec, RECOMMENDED, n, "recommended.")
    entry = doc["algorithms"].get(rec["key"]) if problem is None else None
    if entry is not None and rec["threshold"] not in [t["threshold"] for t in entry["thresholds"]]:
        return "recommended.threshold is not one of its folder's thresholds"  # (the report's "open this first")
    return problem


def _settings_damage(key: str, e: dict) -> str | None:
    """The settings a rerun needs to compute this folder again (mhc.pipeline.recluster)."""
    from .algorithms import parse_algorithm
    from .errors import UsageError

    if e["method"] == "hdbscan":
        needed = ["min_cluster_size"]
    elif key.startswith("combined_"):
        needed = ["require", "linkage", "max_cluster_size", "verify", "isometric"]
    else:
        needed = ["thresholds", "linkage", "max_cluster_size", "verify", "isometric"]
    missing = [k for k in needed if k not in e["settings"]]
    if missing:
        return f"algorithms.{key}.settings.{missing[0]} is missing"
    require = e["settings"]["require"] if key.startswith("combined_") else [f"{key}:0"]
    if not require or not all(r.partition(":")[2].isdigit() for r in require):
        return f"algorithms.{key}.settings.require is not a list of ALGORITHM:THRESHOLD"
    names = [r.partition(":")[0] for r in require]
    try:
        for name in names:
            parse_algorithm(name)
    except UsageError:
        return f"algorithms.{key} is not an algorithm mhc knows"
    return None
