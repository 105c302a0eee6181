"""The subcommands of ``mhc``: cache, report, ignore, evaluate, config (pairs and hydrus in their own modules)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from .arguments import FlagHelpGroup
from .cache import HashCache, older_version
from .cli import _setup_logging, app, command, effective_settings, out, user_errors
from .errors import UsageError, printable
from .options import default_cache_path
from .paths import check_path
from .summary import SummaryDamaged, load, not_an_output, original_of

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
            out.print(f"no cache yet at {path} (the first run makes it)", highlight=False, markup=False,
                      soft_wrap=True)
            return
        check_cache(path)
    with user_errors(), HashCache(path, readonly=True, strict=True) as c:
        info = c.info()
        outputs = c.outputs()
    out.print(f"cache {info.path}: {info.files} files, {info.hashes} hashes, {info.failures} failures, "
              f"{info.ignored} pairs marked not duplicates, {info.bytes / 1e6:.1f} MB", highlight=False, markup=False,
              soft_wrap=True)
    stale = 0
    for k, n in info.keys.items():
        old = older_version(k)
        stale += n if old else 0
        out.print(f"  {k}: {n}{'  (an older mhc decoded these; no longer read)' if old else ''}", highlight=False,
                  markup=False)
    if outputs:  # (a new output takes its thumbnails from theirs)
        out.print(f"outputs made with it, most recent first: {', '.join(printable(o) for o in outputs)}",
                  highlight=False, markup=False, soft_wrap=True)
    if stale:
        out.print(f"{stale} hashes were made by an older mhc and are no longer read; each file's are dropped when it "
                  f"is hashed again (on the next run that sees it), or all at once by mhc cache clear", highlight=False,
                  soft_wrap=True)


def check_cache(path: Path) -> None:
    """Refuse a --cache that is not an mhc cache (a photo, a folder, another program's
    database): read, it was an empty cache ("0 files", "no pairs marked")."""
    from .cache import check_cache_path

    check_cache_path(path, Path("/nonexistent-input"), Path("/nonexistent-output"), run=False)


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


# here, not at the end: --help lists the commands in the order they are registered
from . import pairs_cli  # noqa: E402,F401  (registers mhc pairs; it uses the helpers above)


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
    are true ones. Files missing from the labels are ignored; labelled files missing from
    the output are named.

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
    if rows.unscored:  # (a typo in a path, or a file that could not be read: the scores leave it out)
        out.print(f"{len(rows.unscored)} labelled file(s) are not in this output (not scored), e.g. "
                  f"{printable(rows.unscored[0])}", highlight=False, markup=False, soft_wrap=True)


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
