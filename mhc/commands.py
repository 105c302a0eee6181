"""The subcommands of ``mhc``: cache, report, pairs, ignore, evaluate, config, hydrus."""
from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from .algorithms import parse_algorithm
from .arguments import FlagHelpGroup
from .cache import HashCache, older_version
from .cli import _setup_logging, app, command, effective_settings, err, out, user_errors
from .errors import UsageError, printable
from .options import default_cache_path
from .paths import check_path
from .summary import SummaryDamaged, load, not_an_output, original_of
from .thresholds import one_threshold

cache_app = typer.Typer(cls=FlagHelpGroup, help="Inspect or clear the hash cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")

CacheOption = typer.Option(None, "--cache", help="The cache file (default: the one OUTPUT was made with, else your "
                           "user cache folder's).", metavar="FILE")
OutputOption = typer.Option(None, "-o", "--output", help="An mhc output folder: use the cache it was made with.",
                            metavar="FOLDER")


def _summary_of(output: Path, hint: str) -> dict:
    """``summary.json`` of an output folder the user named; if it is not one, a
    :class:`UsageError` that says what is wrong with it, then ``hint`` (what to do)."""
    check_path("-o/--output", output)
    try:
        doc = load(output)
    except SummaryDamaged as e:
        if e.marked:  # an mhc output: its own message (which says what to do)
            raise
        raise not_an_output(output, hint, f"has an unreadable summary.json ({e.problem})") from None
    if doc is None:
        raise not_an_output(output, hint)
    return doc


CACHE_HINT = "give --cache FILE, or -o an output folder mhc wrote"


def _cache_in(doc: dict) -> Path:
    """The cache an output's summary.json recorded, else the default."""
    recorded = doc.get("cache")
    return Path(recorded) if isinstance(recorded, str) and recorded else default_cache_path()


def cache_of(output: Optional[Path], cache: Optional[Path], *, hashes: bool = False) -> Path:
    """The cache to use: --cache, else the one ``output`` recorded, else the default. An
    ``output`` the user named must be an mhc output: taking the default cache for a mistyped
    one would show, clear or mark the wrong cache. ``hashes``: the command is about the
    cache's hashes (info, clear), so an output made with --no-cache, which has none, is
    refused (its "not a duplicate" marks are in the default cache, as that run read them)."""
    if cache is not None:
        check_path("--cache", cache)
        return cache
    doc = _summary_of(output, CACHE_HINT) if output is not None else {}
    if hashes and "cache" in doc and doc["cache"] is None:
        raise UsageError(f"{output} was made with --no-cache, so no hash cache belongs to it (clearing or showing "
                         f"the default one would be about other runs); give --cache FILE, e.g. --cache "
                         f"{default_cache_path()}")
    return _cache_in(doc)


@command(cache_app, "info")
def cache_info(output: Optional[Path] = OutputOption, cache: Optional[Path] = CacheOption) -> None:
    """Show where the hash cache is and what it holds.

    Example: mhc cache info
    """
    with user_errors():
        path = cache_of(output, cache, hashes=True)
    if not path.exists():
        out.print(f"no cache yet at {path} (the first run makes it)", highlight=False, markup=False, soft_wrap=True)
        return
    with user_errors():
        check_cache(path)
    with user_errors(), HashCache(path, readonly=True, strict=True) as c:
        info = c.info()
    out.print(f"cache {info.path}: {info.files} files, {info.hashes} hashes, {info.failures} failures, "
              f"{info.ignored} pairs marked not duplicates, {info.bytes / 1e6:.1f} MB", highlight=False, markup=False,
              soft_wrap=True)
    stale = 0
    for k, n in info.keys.items():
        old = older_version(k)
        stale += n if old else 0
        out.print(f"  {k}: {n}{'  (an older mhc decoded these; no longer read)' if old else ''}", highlight=False,
                  markup=False)
    if stale:
        out.print(f"{stale} hashes were made by an older mhc and are no longer read; each file's are dropped when it "
                  f"is hashed again (on the next run that sees it), or all at once by mhc cache clear", highlight=False,
                  soft_wrap=True)


def check_cache(path: Path) -> None:
    """Refuse a --cache that is not an mhc cache (a photo, a folder, another program's
    database): read, it was an empty cache ("0 files", "no pairs marked")."""
    from .cache import check_cache_path

    check_cache_path(path, Path("/nonexistent-input"), Path("/nonexistent-output"))


@command(cache_app, "clear")
def cache_clear(output: Optional[Path] = OutputOption, cache: Optional[Path] = CacheOption) -> None:
    """Forget every cached hash (the next run hashes everything again); "not a duplicate"
    marks are kept.

    Example: mhc cache clear
    """
    with user_errors():
        path = cache_of(output, cache, hashes=True)
    if not path.exists():
        out.print(f"no cache at {path}", highlight=False, markup=False, soft_wrap=True)
        return
    with user_errors():
        check_cache(path)
        with HashCache(path, strict=True) as c:
            n = c.clear()
    out.print(f"cleared {n} hashes from {path}", highlight=False, markup=False, soft_wrap=True)


@command(app, "report")
def report_command(
    output: Path = typer.Option(Path("data/output"), "-o", "--output", help="The output folder to rebuild the "
                                "report of.", metavar="FOLDER"),
    workers: int = typer.Option(0, "-j", "--workers", help="Processes for missing thumbnails (0: all cores).",
                                metavar="N"),
) -> None:
    """Rebuild index.html and report/ from summary.json, without rehashing.

    Example: mhc report -o data/output
    """
    from .report import rebuild_report

    _setup_logging(False)
    with user_errors(output=True):
        if workers < 0:  # (as a run refuses it: pool sizes took -1 for one process)
            raise UsageError(f"--workers must be 0 (all cores) or more, not {workers}")
        check_path("-o/--output", output)
        page = rebuild_report(output, workers=workers)
    out.print(f"report: {page}", highlight=False, markup=False, soft_wrap=True)


def _pairs_sources(input: Optional[Path], output: Optional[Path], cache: Optional[Path],
                   need_doc: bool = False) -> tuple[Path, Path, list, dict]:
    """The input, the cache and the --exclude patterns of ``mhc pairs``, and OUTPUT's
    summary.json (read once; ``{}`` when there is none): -i and --cache, else what the
    summary recorded (its patterns when its input is used), else data/images and the
    default cache. Without -o, data/output is looked in if it is an mhc output; an -o that
    is not one is a mistake to name, not to paper over with the defaults. ``need_doc``:
    read the summary even when -i and --cache are given (for the folder to open first)."""
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
    if not entries:
        raise UsageError(f"pass -a/--algo and -t/--threshold, or -o an output folder mhc wrote ({where} has no "
                         "folders of a finished run to take the one to open first from)")
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
                             "--require), whose links mhc pairs does not list; pass -a/--algo and -t/--threshold")
        if entry.get("method") != "sweep":
            raise UsageError(f"{where} was clustered by {printable(str(entry.get('method')))}, without thresholds; "
                             "pass -a/--algo and -t/--threshold")
    key = parse_algorithm(algo).key
    entry = entries.get(key) if isinstance(entries.get(key), dict) else {}
    if threshold is not None:
        return key, threshold, f"mhc pairs: {key} at {threshold}, the algorithm {where} says to open first"
    if first is not None:
        return key, str(first), f"mhc pairs: {key} at {first} bits, the folder {where} says to open first"
    suggested = entry.get("suggested") if isinstance(entry.get("suggested"), dict) else {}
    t = suggested.get("threshold")
    if not entry:
        raise UsageError(f"{where} has no {key} folder; pass -t/--threshold BITS, or -a one of "
                         f"{', '.join(printable(k) for k in entries)}")
    if isinstance(t, bool) or not isinstance(t, int):
        raise UsageError(f"{where} suggests no threshold for {key}; pass -t/--threshold BITS")
    return key, str(t), f"mhc pairs: {key} at {t} bits, the folder {where} suggests for {key}"


@command(app, "pairs")
def pairs_command(
    algo: Optional[str] = typer.Option(None, "-a", "--algo", help="One algorithm, NAME_SIZE (e.g. phash_16; default: "
                                       "the one of OUTPUT's folder to open first).", metavar="NAME_SIZE"),
    threshold: Optional[str] = typer.Option(None, "-t", "--threshold", help="Largest Hamming distance, in bits or "
                                            "percent of the hash's bits (inclusive): 20 or 10% (default: the threshold "
                                            "of OUTPUT's folder to open first, or the one it suggests for -a).",
                                            metavar="BITS"),
    input: Optional[Path] = typer.Option(None, "-i", "--input", help="Folder of media (default: the input OUTPUT was "
                                         "made from, else data/images).", metavar="FOLDER"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="An output folder: its input and cache are "
                                          "used (default: data/output, if there is one).", metavar="FOLDER"),
    cache: Optional[Path] = CacheOption,
    fmt: str = typer.Option("csv", "--format", "-f", help="csv or json.", metavar="csv|json"),
    workers: int = typer.Option(0, "-j", "--workers", help="Hashing processes for files not in the cache.", metavar="N"),
    isometric: bool = typer.Option(False, "--isometric", help="Rotated and mirrored copies count as pairs too.",
                                   metavar=""),
    crops: bool = typer.Option(False, "--crops", help="Crops (and copies) confirmed by their pixels count as pairs "
                               "too, at distance 0; JSON adds crop (share of the source's area).", metavar=""),
    exclude: Optional[list[str]] = typer.Option(None, "--exclude", help="Leave out files and folders matching GLOB, "
                                                "as mhc --exclude (default: the patterns OUTPUT was made with, when "
                                                "its input is used).", metavar="GLOB"),
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
        if algo is not None:
            parse_algorithm(algo)  # a typo is said before the summary is read
        guess = algo is None or threshold is None
        folder, cache_path, recorded, doc = _pairs_sources(input, output, cache, need_doc=guess)
        if guess:
            where = printable(str(output)) if output is not None else "data/output"
            algo, threshold, said = _folder_to_list(doc, where, algo, threshold)
            entry = doc["algorithms"].get(algo)
            made = entry.get("settings") if isinstance(entry, dict) and isinstance(entry.get("settings"), dict) else {}
            missing = [flag for flag, on, name in (("--isometric", isometric, "isometric"), ("--crops", crops, "crops"))
                       if made.get(name) is True and not on]
            if missing:
                said += f" (made with {' '.join(missing)}: add it for the same links)"
            err.print(said, highlight=False, markup=False, soft_wrap=True)
        bits = one_threshold(threshold, parse_algorithm(algo))  # before hashing, which may take hours
        collection = hash_folder(folder, [algo], cache=cache_path, workers=workers, isometric=isometric, crops=crops,
                                 exclude=list(exclude or recorded))
        pairs = collection.pairs(algo, bits, isometric=isometric, crops=crops)
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


@command(app, "ignore")
def ignore_command(
    paths: Optional[list[Path]] = typer.Argument(None, help="Two files that are not duplicates of each other."),
    list_: bool = typer.Option(False, "--list", help="List the pairs marked so far.", metavar=""),
    remove: bool = typer.Option(False, "--remove", help="Forget the given pair (it may link again).", metavar=""),
    output: Optional[Path] = OutputOption,
    cache: Optional[Path] = CacheOption,
) -> None:
    """Mark two files as "not a duplicate": later runs never put them in one cluster.

    Example: mhc ignore "data/images/a.jpg" "data/images/b.jpg"; mhc ignore --list
    """
    with user_errors():
        if list_ and (remove or paths):  # `--list --remove A B` did nothing it said
            raise UsageError("--list shows the marked pairs and takes no files and no --remove; run it on its own")
        if paths and len(paths) == 2:
            # files picked in an output's cluster folders (a viewer shows those): the originals
            # they stand for are marked, in the cache that output was made with
            (a, in_a), (b, in_b) = (original_of(str(p)) for p in paths)
            paths = [Path(a), Path(b)]
            if output is None and cache is None:
                output = in_a or in_b
        path = cache_of(output, cache)
        if list_:
            pairs = []
            if path.exists():
                check_cache(path)
                with HashCache(path, readonly=True, strict=True) as c:
                    pairs = c.ignored()
            for a, b in pairs:
                out.print(f"{printable(a)}\t{printable(b)}", highlight=False, markup=False)
            if not pairs:
                out.print("no pairs marked")
            return
        if not paths or len(paths) != 2:
            raise UsageError("give exactly two files: mhc ignore FILE_A FILE_B (or --list)")
        a, b = (str(p) for p in paths)
        if not remove:
            from .discover import classify

            for p in (a, b):
                if not os.path.isfile(p):
                    raise UsageError(f"{p} is not a file")
                if classify(os.path.basename(p)) is None:  # a typo: no run ever hashes it, the mark would do nothing
                    raise UsageError(f"{printable(p)} is not an image or video by its extension, so no run clusters "
                                     f"it; give two pictures or videos (.jpg, .png, .heic, .mp4, ...)")
            if os.path.samefile(a, b):  # one path, a symlink to the other, or two hard links of one file
                raise UsageError("those are the same file (one name, or two links to it); give two different files")
        check_cache(path)
        with HashCache(path, strict=True) as c:
            if remove:
                done = c.unignore(a, b)
                out.print("forgotten: they may link again" if done else "that pair was not marked")
            else:
                c.ignore(a, b)
                out.print(f"marked as not a duplicate (in {path}); the next run keeps them apart", highlight=False,
                          markup=False, soft_wrap=True)


@command(app, "evaluate")
def evaluate_command(
    output: Path = typer.Argument(..., help="An mhc output folder, one threshold folder of it, or any tree of "
                                            "threshold folders of links."),
    labels: Path = typer.Option(..., "--labels", help="Ground truth: JSON {path: group} (or a corpus labels.json), "
                                "CSV path,group, or a folder with one sub-folder per group.", metavar="FILE"),
) -> None:
    """Precision, recall and F1 of every threshold folder against a labelled sample, best last.

    Pairs of files in the same cluster are predicted duplicates; pairs with the same label
    are true ones. Files missing from the labels are ignored.

    Example: mhc evaluate data/output --labels my-sample.csv
    """
    from .evaluate import evaluate

    with user_errors():
        rows = evaluate(output, labels)
    # plain columns, the folder last and whole: what identifies a row is never cut
    out.print(f"{output} against {labels}, best last:", highlight=False, markup=False, soft_wrap=True)
    out.print(f"{'precision':>9} {'recall':>7} {'F1':>6} {'pairs predicted':>15} {'true pairs':>10}  folder",
              highlight=False, markup=False, soft_wrap=True)
    for r in rows:
        out.print(f"{r.precision:9.3f} {r.recall:7.3f} {r.f1:6.3f} {r.predicted:15d} {r.true:10d}  {r.folder}",
                  highlight=False, markup=False, soft_wrap=True)
    if rows and not any(r.true for r in rows):
        # every file its own group: recall has nothing to find (it counts as 1), so a "best F1"
        # of 1.0 would only say that a folder links none of them
        out.print("no two labelled files in this output share a group, so F1 cannot rank the folders: those with "
                  "0 pairs predicted agree with the labels; to measure recall, label copies with their original's "
                  "group", highlight=False, markup=False, soft_wrap=True)
    elif rows:
        out.print(f"best F1 = {rows[-1].f1:.4f} at {rows[-1].folder}", highlight=False, markup=False, soft_wrap=True)


@command(app, "config")
def config_command(ctx: typer.Context) -> None:
    """Print the effective settings as TOML, each with where it comes from (default,
    mhc.toml, or [tool.mhc] in pyproject.toml). The lines can be pasted into an mhc.toml.
    A run's options go before the command: mhc -a phash_16 -t 0:40:2 config.

    Example: mhc config > mhc.toml
    """
    from .config import toml_lines

    with user_errors():
        values, sources = effective_settings(ctx)
    for line in toml_lines(values, sources):
        out.print(line, highlight=False, markup=False, soft_wrap=True)


from . import hydrus_cli  # noqa: E402,F401  (registers mhc hydrus)
