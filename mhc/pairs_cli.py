"""``mhc pairs``: the command-line side of :meth:`mhc.collection.HashedCollection.pairs`
(and what it shares with ``mhc hydrus push``: the options, and which folder's pairs)."""
from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import NamedTuple, Optional

import typer

from .algorithms import parse_algorithm
from .cli import _setup_logging, app, command, err, user_errors
from .commands import CACHE_HINT, CacheOption, _cache_in, _summary_of
from .errors import EXIT_PARTIAL, UsageError, printable
from .thresholds import one_threshold, one_threshold_form


# the options mhc pairs and mhc hydrus push share (one folder's pairs, from the cache)
AlgoOption = typer.Option(None, "-a", "--algo", help="One algorithm, NAME_SIZE (e.g. phash_16; default: the one of "
                          "OUTPUT's folder to open first).", metavar="NAME_SIZE")
ThresholdOption = typer.Option(None, "-t", "--threshold", help="Largest Hamming distance, in bits or percent of the "
                               "hash's bits (inclusive): 20 or 10% (default: the threshold of OUTPUT's folder to open "
                               "first, or the one it suggests for -a).", metavar="BITS")
WorkersOption = typer.Option(0, "-j", "--workers", help="Hashing processes for files not in the cache.", metavar="N")
IsometricOption = typer.Option(False, "--isometric", help="Rotated and mirrored copies count as pairs too.",
                               metavar="")
SourceOption = typer.Option(None, "-o", "--output", help="An output folder: its input, cache and --exclude patterns "
                            "are used (default: data/output, if there is one).", metavar="FOLDER")
ExcludeOption = typer.Option(None, "--exclude", help="Leave out files and folders matching GLOB, as mhc --exclude; "
                             "repeatable (default: the patterns OUTPUT was made with, when its input is used).",
                             metavar="GLOB")


def _pairs_sources(input: Optional[Path], output: Optional[Path], cache: Optional[Path],
                   need_doc: bool = False) -> tuple[Path, Path, list, dict]:
    """The input, the cache and the --exclude patterns of ``mhc pairs`` (and ``mhc hydrus
    push``), and OUTPUT's summary.json (read once; ``{}`` when there is none): -i and
    --cache, else what the summary recorded (its patterns when its input is used), else
    data/images and the default cache. Without -o, data/output is looked in if it is an mhc
    output; an -o that is not one is a mistake to name, not to paper over with the defaults.
    ``need_doc``: read the summary even when -i and --cache are given (for the folder to open
    first)."""
    if input is not None and cache is not None and not need_doc:
        return input, cache, [], {}
    if output is None:
        try:
            doc = json.loads(Path("data/output/summary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            doc = {}
        doc = doc if isinstance(doc, dict) else {}
    else:  # without -i, a wrong -o is about the input
        doc = _summary_of(output, "pass -i/--input FOLDER, or -o an output folder mhc wrote" if input is None
                          else CACHE_HINT)
    patterns: list = []
    if input is None:
        recorded = doc.get("input")
        if isinstance(recorded, str) and recorded:
            input = Path(recorded)
            options = doc.get("options") if isinstance(doc.get("options"), dict) else {}
            patterns = options.get("exclude") if isinstance(options.get("exclude"), list) else []
        elif output is None:
            input = Path("data/images")
        else:
            raise UsageError(f"{printable(str(output))}/summary.json names no input; pass -i/--input FOLDER")
    return input, cache if cache is not None else _cache_in(doc), patterns, doc


def _folder_to_list(doc: dict, where: str, algo: Optional[str], threshold: Optional[str]) -> tuple[str, str, str]:
    """-a and -t of ``mhc pairs`` when one or both are left out, from the output's
    summary.json ``doc``: without -a, the folder it says to open first (its algorithm at
    -t, when given); with -a alone, the folder it suggests for that algorithm. Returns them
    and a line saying which folder that is."""
    entries = doc.get("algorithms") if isinstance(doc.get("algorithms"), dict) else {}
    if not entries:  # (naming only what is missing: the user gave the other)
        what, taken = (("-t/--threshold BITS too", "the threshold it suggests for that algorithm") if algo is not None
                       else ("-a/--algo NAME_SIZE too", "the algorithm to open first") if threshold is not None
                       else ("-a/--algo and -t/--threshold", "the one to open first"))
        raise UsageError(f"pass {what}, or -o an output folder mhc wrote ({where} has no folders of a finished run "
                         f"to take {taken} from)")
    rec = doc.get("recommended") if isinstance(doc.get("recommended"), dict) else {}
    first = None
    if algo is None:
        if isinstance(rec.get("key"), str) and isinstance(rec.get("threshold"), int):
            algo, first = rec["key"], rec["threshold"]
        elif len(entries) == 1:
            algo = next(iter(entries))
        else:
            raise UsageError(f"{where} names no folder to open first; pass -a/--algo NAME_SIZE")
        entry = entries.get(algo) if isinstance(entries.get(algo), dict) else {}
        if algo.startswith("combined_"):
            raise UsageError(f"the folder to open first in {where} is {printable(algo)} (combined evidence of "
                             "--require), not the pairs of one algorithm; pass -a/--algo and -t/--threshold")
        if entry.get("method") != "sweep":
            raise UsageError(f"{where} was clustered by {printable(str(entry.get('method')))}, without thresholds; "
                             "pass -a/--algo and -t/--threshold")
    key = parse_algorithm(algo).key
    entry = entries.get(key) if isinstance(entries.get(key), dict) else {}
    if threshold is not None:
        return key, threshold, f"{key} at {threshold}, the algorithm {where} says to open first"
    if first is not None:
        return key, str(first), f"{key} at {first} bits, the folder {where} says to open first"
    suggested = entry.get("suggested") if isinstance(entry.get("suggested"), dict) else {}
    t = suggested.get("threshold")
    if not entry:
        raise UsageError(f"{where} has no {key} folder; pass -t/--threshold BITS, or -a one of "
                         f"{', '.join(printable(k) for k in entries)}")
    if isinstance(t, bool) or not isinstance(t, int):
        raise UsageError(f"{where} suggests no threshold for {key}; pass -t/--threshold BITS")
    return key, str(t), f"{key} at {t} bits, the folder {where} suggests for {key}"


class Chosen(NamedTuple):
    input: Path
    cache: Path
    exclude: list  # the patterns OUTPUT was made with, when its input is used
    algo: str
    threshold: str
    said: Optional[str]  # which folder -a and -t were taken from, when they were


def which_pairs(input: Optional[Path], output: Optional[Path], cache: Optional[Path], algo: Optional[str],
                threshold: Optional[str], command: str, flags: dict[str, bool]) -> Chosen:
    """What ``mhc pairs`` and ``mhc hydrus push`` list: the files, the cache and the folder
    (-a, -t; from the output when left out: see :func:`_folder_to_list`). ``flags``: the
    command's --isometric and --crops (an output made with one the command lacks is said)."""
    if algo is not None:
        parse_algorithm(algo)  # a typo is said before the summary is read
    if threshold is not None:
        one_threshold_form(threshold)  # (its range is checked once the algorithm is known)
    guess = algo is None or threshold is None
    folder, cache_path, recorded, doc = _pairs_sources(input, output, cache, need_doc=guess)
    said = None
    if guess:
        where = printable(str(output)) if output is not None else "data/output"
        algo, threshold, said = _folder_to_list(doc, where, algo, threshold)
        said = f"{command}: {said}"
        entry = doc["algorithms"].get(algo)
        made = entry.get("settings") if isinstance(entry, dict) and isinstance(entry.get("settings"), dict) else {}
        missing = [name for name, on in flags.items() if made.get(name) is True and not on]
        if missing:
            said += f" (made with {' '.join('--' + m for m in missing)}: add {'it' if len(missing) == 1 else 'them'} " \
                    "for the same links)"
    return Chosen(folder, cache_path, recorded, algo, threshold, said)


SHOWN_UNREAD = 10


def unread(errors: list, consequence: str, command: str = "") -> list[str]:
    """Lines naming the files that could not be used (path: reason), the first
    :data:`SHOWN_UNREAD` of them: without them a file missing from the pairs went unnoticed."""
    if not errors:
        return []
    lines = [f"{command + ': ' if command else ''}{len(errors)} file(s) could not be used; {consequence}:"]
    lines += [f"  {printable(e.path)}: {e.reason}" for e in errors[:SHOWN_UNREAD]]
    if len(errors) > SHOWN_UNREAD:
        lines.append(f"  ... and {len(errors) - SHOWN_UNREAD} more (a run lists them all in its errors.csv)")
    return lines


@command(app, "pairs")
def pairs_command(
    algo: Optional[str] = AlgoOption,
    threshold: Optional[str] = ThresholdOption,
    input: Optional[Path] = typer.Option(None, "-i", "--input", help="Folder of media (default: the input OUTPUT was "
                                         "made from, else data/images).", metavar="FOLDER"),
    output: Optional[Path] = SourceOption,
    cache: Optional[Path] = CacheOption,
    fmt: str = typer.Option("csv", "--format", "-f", help="csv or json.", metavar="csv|json"),
    workers: int = WorkersOption,
    isometric: bool = IsometricOption,
    crops: bool = typer.Option(False, "--crops", help="Crops (and copies) confirmed by their pixels count as pairs "
                               "too, at distance 0; JSON adds crop (share of the source's area).", metavar=""),
    exclude: Optional[list[str]] = ExcludeOption,
) -> None:
    """Print every pair of similar files with its distance, closest first (for your own scripts).

    Hashes come from the cache when they are there. The pairs are exactly the links behind
    the clusters of the same threshold folder. CSV columns and JSON keys: path_a, path_b,
    distance; JSON adds file_a and file_b (width, height, bytes, format, taken, mtime_ns) and
    probable_original (the larger, less compressed, older of the two).

    Without -a and -t, the pairs of the folder OUTPUT says to open first (stderr says which).

    Example: mhc pairs -o data/output -a phash_16 -t 20 --format json > pairs.json
    """
    from .collection import hash_folder
    from .streams import binary_stdout, require_stdout

    _setup_logging(False)
    with user_errors():
        require_stdout()  # the pairs go there: a closed one is said before hashing, which may take hours
        if fmt not in ("csv", "json"):
            raise UsageError(f"--format must be csv or json, not {fmt!r}")
        folder, cache_path, recorded, algo, threshold, said = which_pairs(
            input, output, cache, algo, threshold, "mhc pairs", {"isometric": isometric, "crops": crops})
        bits = one_threshold(threshold, parse_algorithm(algo))  # before hashing, which may take hours
        if said:  # (after the checks: a refusal is its one line alone)
            err.print(said, highlight=False, markup=False, soft_wrap=True)
        collection = hash_folder(folder, [algo], cache=cache_path, workers=workers, isometric=isometric, crops=crops,
                                 exclude=list(exclude or recorded))
        pairs = collection.pairs(algo, bits, isometric=isometric, crops=crops)
    for line in unread(collection.errors, "their pairs are not listed", "mhc pairs"):  # on stderr: stdout is the pairs'
        err.print(line, highlight=False, markup=False, soft_wrap=True)
    if collection.disk_errors:
        from .terminal import disk_errors_line

        err.print(f"mhc pairs: {disk_errors_line(collection.disk_errors)}", highlight=False, markup=False,
                  soft_wrap=True)
    crop_area = {(min(m.outer, m.inner), max(m.outer, m.inner)): round(m.area, 3) for m in collection.crop_matches}
    if fmt == "json":
        index = {f: i for i, f in enumerate(collection.files)}
        # row by row, as json.dump(rows, indent=1) writes the list: all the rows at once took
        # ~850 bytes a pair (4x the pairs themselves)
        sys.stdout.write("[" if pairs else "[]\n")
        for k, (a, b, d) in enumerate(pairs):
            ia, ib = index[a], index[b]
            row = {"path_a": a, "path_b": b, "distance": d, "file_a": collection.facts(ia),
                   "file_b": collection.facts(ib),
                   "probable_original": collection.files[collection.probable_original([ia, ib])],
                   "same_file": collection.same_file(ia, ib)}  # hard links: deleting one frees nothing
            if crops:
                row["crop"] = crop_area.get((min(ia, ib), max(ia, ib)))
            text = json.dumps(row, indent=1, ensure_ascii=True).replace("\n", "\n ")
            sys.stdout.write(("\n " if k == 0 else ",\n ") + text)
        if pairs:
            sys.stdout.write("\n]\n")
    else:
        # A name that is not UTF-8 goes out as its own bytes, as in errors.csv: a script reading
        # the rows opens the file (printed as "caf\xe9.jpg" it named no file)
        sys.stdout.flush()
        with binary_stdout() as buffer:
            raw = io.TextIOWrapper(buffer, encoding="utf-8", errors="surrogateescape", newline="", write_through=True)
            try:
                w = csv.writer(raw, lineterminator="\n")  # for cut, awk and sort, not the RFC's CRLF
                w.writerow(["path_a", "path_b", "distance"])
                # ... but read on a terminal, a name's control bytes (ESC [ ...) would recolour
                # or rewrite it as `ls` guards against: there names are shown escaped, as in
                # every other line mhc prints
                shown = printable if buffer.isatty() else str
                for a, b, d in pairs:
                    w.writerow([shown(a), shown(b), d])
            finally:
                raw.detach()  # sys.stdout keeps the buffer
    if collection.disk_errors:  # the pairs are whole for the files read; the disk failed the rest
        raise typer.Exit(EXIT_PARTIAL)
