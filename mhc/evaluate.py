"""Scoring output folders against hand labels: pairwise precision, recall and F1.

Labels map files to groups; two files with the same group are true duplicates. Accepted:
a JSON object ``{path: group}``, a corpus ``labels.json`` (``{"files": {path: {"group":
...}}}``), a CSV with ``path,group`` columns, or a folder holding one sub-folder per group
(files directly in it are singletons). Relative paths are relative to the labels file (or
folder). Files in the output but not in the labels are ignored; labelled files not in the
output are left out of the scores, and named.
"""
from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .discover import enclosing_output
from .errors import UsageError, printable


@dataclass(frozen=True)
class Score:
    folder: str
    precision: float
    recall: float
    f1: float
    predicted: int  # predicted pairs among labelled files
    true: int  # true pairs among labelled files present


def load_labels(path: str | Path) -> dict[str, str | None]:
    """Real path of each labelled file -> its group (None: a singleton)."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"--labels {p} does not exist")
    base = p if p.is_dir() else p.parent
    raw: dict[str, str | None] = {}
    if (owner := enclosing_output(p.resolve() if p.is_dir() else p.resolve().parent)) is not None:
        # (`mhc evaluate out --labels out`: scored against its own folders, an F1 that meant
        # nothing; `--labels out/summary.json`: its options read as groups)
        where = "an mhc output folder" if owner == p.resolve() else f"inside the mhc output folder {owner}"
        raise UsageError(f"--labels {p} is {where}, not labels: give your own grouping (CSV path,group, JSON, or a "
                         f"folder of groups)")
    if p.is_dir():
        for root, _, files in os.walk(p):
            rel = Path(root).relative_to(p)
            for f in files:  # (absolute: a relative one would be taken relative to the folder again)
                raw[os.path.abspath(os.path.join(root, f))] = rel.parts[0] if rel.parts else None
    elif p.suffix.lower() == ".csv":
        try:
            rows = list(csv.reader(io.StringIO(_text(p), newline="")))
        except csv.Error as e:
            raise UsageError(f"--labels {p} is not a CSV file ({e}); use CSV path,group, JSON, or a folder of "
                             f"groups") from None
        if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "group"]:
            rows = rows[1:]
        for r in rows:
            if len(r) < 2:
                raise UsageError(f"--labels {p}: every row needs path,group (got {r!r})")
            raw[r[0]] = r[1] or None
    else:
        try:
            doc = json.loads(_text(p))
        except ValueError as e:
            raise UsageError(f"--labels {p} is not JSON ({e}); use JSON, CSV path,group, or a folder of groups") from None
        if isinstance(doc, dict) and isinstance(doc.get("files"), dict):
            raw = {k: (v.get("group") if isinstance(v, dict) else v) for k, v in doc["files"].items()}
        elif isinstance(doc, dict):
            raw = {k: v for k, v in doc.items()}
        else:
            raise UsageError(f"--labels {p}: expected an object of path -> group")
    odd = next((k for k, g in raw.items() if isinstance(g, (list, dict, bool))), None)
    if odd is not None:
        raise UsageError(f"--labels {p}: the group of {odd} is {json.dumps(raw[odd])}; give each file one group "
                         f"name or number")
    if not raw:
        raise UsageError(f"--labels {p} holds no labels; give each file's group (path,group rows, a JSON object "
                         f"of path -> group, or a folder of groups)")
    nul = next((k for k in raw if "\0" in k), None)  # (JSON can say \u0000; no path holds it: ValueError)
    if nul is not None:
        raise UsageError(f"--labels {p}: the path '{printable(nul)}' holds a NUL character, which no file name can")
    return {os.path.realpath(k if os.path.isabs(k) else base / k): (None if g is None else str(g)) for k, g in raw.items()}


def _text(p: Path) -> str:
    """The labels file as text: UTF-8 (a spreadsheet's byte-order mark dropped), and a path
    that is not UTF-8 as its own bytes, as errors.csv writes them (so it names its file)."""
    try:
        data = p.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read --labels {p} ({e.strerror})") from None
    if b"\0" in data:  # (UTF-16 from a Windows editor, or not text at all)
        raise UsageError(f"--labels {p} is not a text file (UTF-8); use CSV path,group, JSON, or a folder of "
                         f"groups")
    return data.decode("utf-8-sig", "surrogateescape")


def threshold_folders(root: Path) -> list[Path]:
    """Folders whose sub-folders hold links directly (threshold folders), in name order:
    ``root`` itself when it is one (the folder a user opened)."""
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        d = Path(dirpath)
        if any(any(e.is_symlink() or e.is_file() for e in os.scandir(d / s)) for s in dirnames
               if not s.startswith(".")) and not d.name.startswith(".") and (d != root or _cluster_folders(dirnames)):
            if all(not (d / s / x).is_dir() for s in dirnames for x in os.listdir(d / s)):
                found.append(d)
                dirnames[:] = []
        dirnames[:] = [x for x in dirnames if x not in (".mhc", "report")]
    return sorted(found)


class Scores(list):
    """:class:`Score` rows, best F1 last; ``unscored``: labelled files that are in no folder
    of the output (not in its input, or could not be read), left out of every score."""

    unscored: list[str]

    def __init__(self, rows, unscored: list[str]):
        super().__init__(rows)
        self.unscored = unscored


def score_folder(folder: Path, labels: dict[str, str | None], originals: dict[str, str] | None = None,
                 known: set[str] | frozenset = frozenset()) -> Score:
    """Pairwise scores of one threshold folder. ``originals``: link name -> original file,
    for trees made of copies or hard links (``--link copy|hardlink``). ``known``: labelled
    files of the output; one that is not in this folder is unclustered in it, unlinked
    (``--no-unclustered-links``): left out, it would drop its true pairs from the recall."""
    return _score(str(folder), _members(folder, labels, originals), labels, known)


def _members(folder: Path, labels: dict[str, str | None], originals: dict[str, str] | None) -> dict[str, tuple]:
    """Labelled file in ``folder`` -> its cluster (a singleton gets one of its own)."""
    assign: dict[str, tuple] = {}
    n = 0
    for sub in sorted(folder.iterdir()):
        if not sub.is_dir():
            continue
        single = sub.name.startswith("unclustered")
        for e in os.scandir(sub):
            if e.is_symlink() or not originals:
                real = os.path.realpath(e.path)
            else:
                real = os.path.realpath(originals.get(e.name, e.path))
            if real not in labels:
                continue
            n += 1
            assign[real] = ("s", n) if single else ("c", sub.name)
    return assign


def _score(folder: str, assign: dict[str, tuple], labels: dict[str, str | None], known) -> Score:
    missing = [f for f in known if f not in assign]
    if missing:
        assign = {**assign, **{f: ("u", f) for f in missing}}
    p, r, f1, pp, tt = pair_scores(assign, labels)
    return Score(folder, p, r, f1, pp, tt)


def pair_scores(assign: dict, groups: dict) -> tuple[float, float, float, int, int]:
    """Pairwise precision, recall and F1 of a clustering: ``assign`` maps each item to its
    cluster (a singleton gets a cluster of its own), ``groups`` maps it to its true group
    (None: belongs with nothing). Also the predicted and true pair counts."""
    both: Counter = Counter()
    pred: Counter = Counter()
    truth: Counter = Counter()
    for f, k in assign.items():
        pred[k] += 1
        g = groups[f]
        if g is not None:
            truth[g] += 1
            both[(k, g)] += 1
    pairs = lambda c: sum(v * (v - 1) // 2 for v in c.values())  # noqa: E731
    tp, pp, tt = pairs(both), pairs(pred), pairs(truth)
    p = tp / pp if pp else 1.0
    r = tp / tt if tt else 1.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0), pp, tt


def _cluster_folders(names: list[str]) -> bool:
    from .ownership import CLUSTER_FOLDER

    return all(CLUSTER_FOLDER.match(n) for n in names if not n.startswith("."))


def evaluate(output: str | Path, labels_path: str | Path) -> Scores:
    """Scores of every threshold folder under ``output``, best F1 last (``.unscored``: the
    labelled files that are not in the output). Copies and hard links are mapped back to
    their originals through the output's summary.json."""
    given = Path(output)
    if not given.is_dir():
        raise UsageError(f"{given} is not a folder; pass an mhc output folder")
    out = given.resolve()
    labels = load_labels(labels_path)
    folders = threshold_folders(out)
    owner = enclosing_output(out)
    recorded: set[Path] = set()
    if owner is not None:  # ... and those with no link at all (nothing clustered, --no-unclustered-links)
        recorded = _recorded_folders(owner)
        folders = sorted(set(folders) | {f for f in recorded if f == out or out in f.parents})
    if not folders:
        _not_the_input(given, out, owner, labels)
        # a cluster folder, opened in a viewer (links; in an output made with --link copy, files)
        if out.parent in recorded or any(e.is_symlink() or (owner is not None and e.is_file())
                                         for e in os.scandir(out)):
            raise UsageError(f"{given} is a folder of links, not of clusters; pass the threshold folder it lies in "
                             f"({given.parent}) or the output folder")
        raise UsageError(f"{given} holds no threshold folders of links; pass an mhc output folder")
    # a folder of an output (an algorithm's, a threshold's) is named (and its copies mapped)
    # from the output it lies in
    top = owner or (out if folders != [out] else out.parent)
    names = _originals(top)
    algo = [f.relative_to(top).parts[0] if f != top else "" for f in folders]
    members = [_members(f, labels, names.get(a)) for f, a in zip(folders, algo)]
    # the labelled files of the output: those its summary.json lists, and those any folder of
    # the same algorithm holds (a tree without a summary)
    files = _output_files(top) & labels.keys()
    seen: dict[str, set[str]] = {}
    for a, m in zip(algo, members):
        seen.setdefault(a, set()).update(m)
    present = files.union(*seen.values())
    if not present:
        _not_the_input(given, out, owner, labels)
        raise UsageError(f"no file in {given} is one of the labelled files in {labels_path}; check the labels' "
                         f"paths (relative ones are relative to the labels file)")
    scores = [_score(os.path.relpath(f, top), m, labels, files | seen[a]) for f, a, m in zip(folders, algo, members)]
    return Scores(sorted(scores, key=lambda s: (s.f1, s.folder)), sorted(labels.keys() - present))


def _not_the_input(given: Path, out: Path, owner: Path | None, labels: dict) -> None:
    """Refuse the input given as the output (outside every mhc output, holding labelled files)."""
    if owner is None and any(f.startswith(str(out) + os.sep) for f in labels):
        raise UsageError(f"{given} holds the labelled files themselves: it is the input, not an output; pass the "
                         f"folder an mhc run wrote (its -o/--output)")


def _recorded_folders(out: Path) -> set[Path]:
    """The threshold folders an mhc output's summary.json records that are there."""
    try:
        from .summary import load

        doc = load(out)
    except Exception:  # (damaged, unreadable: the folders alone say what they hold)
        return set()
    found = set()
    for key, entry in ((doc or {}).get("algorithms") or {}).items():
        for t in (entry.get("thresholds") or []) if isinstance(entry, dict) else []:
            folder = out / key / t["folder"] if isinstance(t, dict) and isinstance(t.get("folder"), str) else None
            if folder is not None and folder.is_dir():
                found.add(folder)
    return found


def _output_files(out: Path) -> set[str]:
    """Real paths of the files an mhc output's summary.json lists (empty without one)."""
    try:
        from .summary import load

        doc = load(out)
    except Exception:  # (damaged, unreadable: the folders alone say what they hold)
        return set()
    files = doc.get("files") if isinstance(doc, dict) else None
    return {os.path.realpath(f) for f in files if isinstance(f, str)} if isinstance(files, list) else set()


def _originals(out: Path) -> dict[str, dict[str, str]]:
    """Per algorithm folder: link name -> original path (from summary.json, if any)."""
    try:
        from .summary import link_originals

        return link_originals(out)
    except Exception:
        return {}
