"""The ``mhc`` command: a thin layer over :func:`mhc.run` (typer + rich)."""
from __future__ import annotations

import csv
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from . import __version__
from .algorithms import DESCRIPTIONS, PRESETS
from .cache import HashCache
from .errors import MhcError, UsageError, printable
from .pipeline import Options, RunResult, list_pairs, rebuild_report, run

EPILOG = """
[bold]Examples[/bold]

  mhc                                         data/images -> data/output, default algorithms
  mhc -i ~/Pictures -o /tmp/clusters -a phash_16 -a dhash_8
  mhc -a phash_8 --thresholds 0:12:2          thresholds 0, 2, ..., 12 bits
  mhc -a phash_16 --thresholds 0%:20%:2%      the same as percentages of the 256 bits
  mhc --preset image-clustering               image-clustering's 14 algorithms
  mhc --dry-run                               compute and print, write nothing
  mhc -i ~/Videos --frames 30 --cross-media   videos too, and stills that match their frames
  mhc cache info                              what the hash cache holds

[bold]Output[/bold]: OUT/<algo>_<size>/thr_NNN_unclustered_U/RANK_SIZE/<stem>_<hash><ext> -> original;
every file appears once per threshold folder; open the folders in an image viewer.
"""

app = typer.Typer(
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    help="mhc (MediaHashCluster): group duplicate and near-duplicate images by perceptual hashing.\n\n"
    "Hashes every image and video under --input once per algorithm (cached; videos by sampled frames), then for each threshold in a sweep "
    "links files whose hashes differ by at most that many bits and writes the groups as folders of "
    "symlinks, largest first. Your files are only ever read.",
    epilog=EPILOG,
)
cache_app = typer.Typer(help="Inspect or clear the hash cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
hydrus_app = typer.Typer(help="Hydrus Network: send pairs to a running client as potential duplicates.",
                         no_args_is_help=True)
app.add_typer(hydrus_app, name="hydrus")

err = Console(stderr=True)
out = Console()

ALGO_HELP = (
    "Algorithm as NAME_SIZE, repeatable (default: phash_8 ahash_8 dhash_8 whash_8 phash_16). Names: "
    + "; ".join(f"{k}: {v}" for k, v in DESCRIPTIONS.items())
    + "; avhash = ahash."
)


def _version(value: bool) -> None:
    if value:
        out.print(f"mhc {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def main_command(
    ctx: typer.Context,
    input: Path = typer.Option(Path("data/images"), "-i", "--input", help="Folder of media to scan (recursively; never modified)."),
    output: Path = typer.Option(Path("data/output"), "-o", "--output", help="Output folder (made by mhc; replaced on each run)."),
    algo: Optional[list[str]] = typer.Option(None, "-a", "--algo", help=ALGO_HELP, metavar="NAME_SIZE"),
    preset: Optional[str] = typer.Option(None, "--preset", help=f"A named algorithm set: {', '.join(PRESETS)}."),
    thresholds: Optional[str] = typer.Option(
        None, "-t", "--thresholds", metavar="START:STOP:STEP",
        help="Hamming distances to sweep, in bits (0:19:1) or percent of the hash bits (0%:30%:2%); STOP is "
        "included. Default per hash size as image-clustering: 8->0:19:1, 12->0:58:2, 16->0:108:3, 20->0:195:5."),
    workers: int = typer.Option(0, "-j", "--workers", help="Hashing processes (0 = all cores)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Hash cache file (default: .mhc-cache.sqlite beside the output folder)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the hash cache."),
    exact: bool = typer.Option(False, "--exact", help="Decode at full resolution: bit-exact imagehash results, slower."),
    link: str = typer.Option("symlink", "--link", help="How files appear in the output: symlink, hardlink or copy."),
    relative_links: bool = typer.Option(False, "--relative-links", help="Relative symlink targets (default: absolute)."),
    follow_symlinks: bool = typer.Option(False, "--follow-symlinks", help="Also scan symlinked folders."),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", help="Skip images above this many pixels (default 178956970, Pillow's guard)."),
    dry_run: bool = typer.Option(False, "-n", "--dry-run", help="Compute and print the summary; write nothing."),
    no_report: bool = typer.Option(False, "--no-report", help="Skip the HTML report (index.html) and its thumbnails."),
    frames: int = typer.Option(20, "--frames", help="Frames sampled per video, evenly over its duration."),
    video_exact: bool = typer.Option(False, "--video-exact", help="Exact frame times (slower) instead of the nearest keyframes."),
    video_match: str = typer.Option("majority", "--video-match", help="How videos are compared: majority (per-bit majority "
                                    "of frame hashes) or frames (median distance of time-aligned frames; stricter)."),
    cross_media: bool = typer.Option(False, "--cross-media", help="Also link a video with images matching one of its frames."),
    duration_tolerance: float = typer.Option(0.05, "--duration-tolerance", help="Videos whose durations differ by more than "
                                             "this fraction of the longer (and more than 1.5 s) are not linked; 0 turns it off."),
    no_unclustered_links: bool = typer.Option(False, "--no-unclustered-links", help="Leave the unclustered_U folders "
                                              "empty (much less writing on large collections)."),
    changed_only: bool = typer.Option(False, "--changed-only", help="Write only threshold folders whose clusters "
                                      "differ from the previous threshold's."),
    dask: Optional[str] = typer.Option(None, "--dask", envvar="DASK_SCHEDULER", metavar="ADDRESS",
                                       help="Hash on a Dask cluster, e.g. tcp://scheduler:8786 (workers must see the "
                                       "same paths). Needs pip install 'mhc[dask]'."),
    isometric: bool = typer.Option(False, "--isometric", help="Mirrored and rotated copies match: the distance is the "
                                   "least over the 8 rotations/mirrors of one file."),
    verify: Optional[str] = typer.Option(None, "--verify", metavar="ssim[:T]", help="Keep only links whose small grey "
                                         "versions have structural similarity >= T (default 0.7; needs mhc[precision])."),
    max_cluster_size: Optional[int] = typer.Option(None, "--max-cluster-size", help="Split a cluster larger than this "
                                                   "along its weakest links."),
    linkage: str = typer.Option("single", "--linkage", help="single (connected components) or complete (every pair "
                                "of a cluster within the threshold; no chaining)."),
    method: str = typer.Option("sweep", "--method", help="sweep (thresholds) or hdbscan (density clustering; writes "
                               "<algo>/hdbscan_minN/; needs mhc[precision])."),
    min_cluster_size: int = typer.Option(2, "--min-cluster-size", help="HDBSCAN's smallest cluster."),
    require: Optional[list[str]] = typer.Option(None, "--require", metavar="NAME_SIZE:BITS", help="Combined evidence, "
                                                "repeatable: link only where every named algorithm agrees within its "
                                                "threshold; written as combined_.../ swept at 25-100 %."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bars or tables; errors only."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    with user_errors():
        params, _ = effective_settings(ctx)
    p = params
    options = Options(
        input=Path(p["input"]), output=Path(p["output"]), algorithms=list(p["algo"] or []), preset=p["preset"],
        thresholds=p["thresholds"], workers=p["workers"], cache=p["cache"] and Path(p["cache"]),
        no_cache=p["no_cache"], exact=p["exact"], link=p["link"], relative_links=p["relative_links"],
        dry_run=p["dry_run"], follow_symlinks=p["follow_symlinks"], max_pixels=p["max_pixels"],
        no_report=p["no_report"], frames=p["frames"], video_exact=p["video_exact"], video_match=p["video_match"],
        cross_media=p["cross_media"], duration_tolerance=p["duration_tolerance"],
        no_unclustered_links=p["no_unclustered_links"], changed_only=p["changed_only"], dask=p["dask"],
        isometric=p["isometric"], verify=p["verify"], max_cluster_size=p["max_cluster_size"], linkage=p["linkage"],
        method=p["method"], min_cluster_size=p["min_cluster_size"], require=list(p["require"] or []),
    )
    quiet = p["quiet"]
    _setup_logging(quiet)
    with user_errors():
        if quiet:
            result = run(options)
        else:
            with _progress() as (progress, callback):
                result = run(options, progress=callback)
    if not quiet:
        print_summary(result, out)


CacheOption = Annotated[Optional[Path], typer.Option("--cache", help="The cache file (default: beside --output).")]
OutputOption = Annotated[Path, typer.Option("-o", "--output", help="The output folder whose default cache to use.")]


def _existing_cache(output: Path, cache: Optional[Path]) -> Path | None:
    path = cache or Options(output=output).default_cache_path()
    if not path.exists():
        out.print(f"no cache at {path}")
        return None
    return path


@cache_app.command("info")
def cache_info(output: OutputOption = Path("data/output"), cache: CacheOption = None) -> None:
    """Show where the cache is and what it holds."""
    path = _existing_cache(output, cache)
    if path is None:
        return
    with user_errors(), HashCache(path) as c:
        info = c.info()
    out.print(f"cache {info.path}: {info.files} files, {info.hashes} hashes, {info.failures} failures, "
              f"{info.bytes / 1e6:.1f} MB")
    for k, n in info.keys.items():
        out.print(f"  {k}: {n}")


@cache_app.command("clear")
def cache_clear(output: OutputOption = Path("data/output"), cache: CacheOption = None) -> None:
    """Forget every cached hash (the next run hashes everything again)."""
    path = _existing_cache(output, cache)
    if path is None:
        return
    with user_errors(), HashCache(path) as c:
        n = c.clear()
    out.print(f"cleared {n} hashes from {path}")


@app.command("report")
def report_command(
    output: Path = typer.Option(Path("data/output"), "-o", "--output", help="The output folder to rebuild the report of."),
    workers: int = typer.Option(0, "-j", "--workers", help="Processes for missing thumbnails (0 = all cores)."),
) -> None:
    """Rebuild index.html and report/ from summary.json, without rehashing.

    Example: mhc report -o data/output
    """
    with user_errors():
        page = rebuild_report(output, workers=workers)
    out.print(f"report: {page}")


@hydrus_app.command("push")
def hydrus_push(
    algo: str = typer.Option(..., "-a", "--algo", help="One algorithm, NAME_SIZE (e.g. phash_16).", metavar="NAME_SIZE"),
    threshold: int = typer.Option(..., "-t", "--threshold", help="Largest Hamming distance in bits (inclusive)."),
    api_url: str = typer.Option("http://127.0.0.1:45869", "--api-url", help="The Hydrus client's API address."),
    api_key: str = typer.Option(..., "--api-key", envvar="HYDRUS_API_KEY", help="An access key with the permissions "
                                "'search for and fetch files' and 'manage file relationships'."),
    input: Path = typer.Option(Path("data/images"), "-i", "--input", help="Folder of media (the files Hydrus holds, "
                               "or copies of them: files are matched by SHA-256)."),
    output: Path = typer.Option(Path("data/output"), "-o", "--output", help="Output folder (its cache is used)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Hash cache file (default: beside --output)."),
    batch: int = typer.Option(100, "--batch", help="Pairs per request."),
    dry_run: bool = typer.Option(False, "-n", "--dry-run", help="Find and check the pairs; send nothing."),
    workers: int = typer.Option(0, "-j", "--workers", help="Hashing processes for files not in the cache."),
) -> None:
    """Send the pairs of one threshold to Hydrus as potential duplicates (by SHA-256).

    Example: mhc hydrus push -a phash_16 -t 12 --api-key 0123abcd... --dry-run
    """
    from .hydrus import HydrusClient, push_pairs

    _setup_logging(False)
    with user_errors():
        pairs = list_pairs(Options(input=input, output=output, cache=cache, algorithms=[algo], workers=workers), threshold)
        client = HydrusClient(api_url, api_key)
        try:
            result = push_pairs(pairs, client, batch=batch, dry_run=dry_run)
        except ConnectionError as e:
            raise MhcError(f"{e}; is the Hydrus client running with its Client API on at {api_url}?") from None
    verb = "would send" if dry_run else "sent"
    out.print(f"{result.pairs} pairs within {threshold} bits; {verb} {result.sent} as potential duplicates"
              + (f"; {result.failed_batches} batch(es) failed after retries" if result.failed_batches else ""))
    if result.unknown_files:
        out.print(f"{len(result.unknown_files)} file(s) unknown to the Hydrus client (their pairs were not sent):")
        for p in result.unknown_files:
            out.print(f"  {printable(p)}", highlight=False, markup=False)
    if result.failed_batches:
        raise typer.Exit(1)


@app.command("ignore")
def ignore_command(
    paths: Optional[list[Path]] = typer.Argument(None, help="Two files that are not duplicates of each other."),
    list_: bool = typer.Option(False, "--list", help="List the pairs marked so far."),
    remove: bool = typer.Option(False, "--remove", help="Forget the given pair (it may link again)."),
    output: Path = typer.Option(Path("data/output"), "-o", "--output", help="The output folder whose cache to use."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="The cache file (default: beside --output)."),
) -> None:
    """Mark two files as "not a duplicate": later runs never put them in one cluster.

    Example: mhc ignore "data/images/a.jpg" "data/images/b.jpg"; mhc ignore --list
    """
    path = cache or Options(output=output).default_cache_path()
    with user_errors():
        if list_:
            if not path.exists():
                out.print("no pairs marked")
                return
            with HashCache(path) as c:
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
            for p in (a, b):
                if not os.path.isfile(p):
                    raise UsageError(f"{p} is not a file")
        with HashCache(path) as c:
            if remove:
                done = c.unignore(a, b)
                out.print("forgotten: they may link again" if done else "that pair was not marked")
            else:
                c.ignore(a, b)
                out.print("marked as not a duplicate; the next run keeps them apart")


@app.command("evaluate")
def evaluate_command(
    output: Path = typer.Argument(..., help="An mhc output folder (or any tree of threshold folders of links)."),
    labels: Path = typer.Option(..., "--labels", help="Ground truth: JSON {path: group} (or a corpus labels.json), "
                                "CSV path,group, or a folder with one sub-folder per group."),
) -> None:
    """Precision, recall and F1 of every threshold folder against a labelled sample, best last.

    Pairs of files in the same cluster are predicted duplicates; pairs with the same label
    are true ones. Files missing from the labels are ignored.

    Example: mhc evaluate data/output --labels my-sample.csv
    """
    from .evaluate import evaluate

    with user_errors():
        rows = evaluate(output, labels)
    t = Table(title=f"{output} against {labels}", title_justify="left")
    for col in ("folder", "precision", "recall", "F1", "pairs predicted", "true pairs"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(r.folder, f"{r.precision:.3f}", f"{r.recall:.3f}", f"{r.f1:.3f}", str(r.predicted), str(r.true))
    out.print(t)
    if rows:
        out.print(f"best F1 = {rows[-1].f1:.4f} at {rows[-1].folder}")


@app.command("pairs")
def pairs_command(
    algo: str = typer.Option(..., "-a", "--algo", help="One algorithm, NAME_SIZE (e.g. phash_16).", metavar="NAME_SIZE"),
    threshold: int = typer.Option(..., "-t", "--threshold", help="Largest Hamming distance in bits (inclusive)."),
    input: Path = typer.Option(Path("data/images"), "-i", "--input", help="Folder of media to scan."),
    output: Path = typer.Option(Path("data/output"), "-o", "--output", help="Output folder (its cache is used)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Hash cache file (default: beside --output)."),
    fmt: str = typer.Option("csv", "--format", "-f", help="csv or json."),
    workers: int = typer.Option(0, "-j", "--workers", help="Hashing processes for files not in the cache."),
    isometric: bool = typer.Option(False, "--isometric", help="Rotated and mirrored copies count as pairs too."),
) -> None:
    """Print every pair of similar files with its distance, closest first (for your own scripts).

    Hashes come from the cache when they are there. The pairs are exactly the links
    behind the clusters of the same threshold folder.

    Example: mhc pairs -a phash_16 -t 20 --format json > pairs.json
    """
    if fmt not in ("csv", "json"):
        err.print(f"[red]Error:[/] --format must be csv or json, not {fmt!r}")
        raise typer.Exit(2)
    _setup_logging(False)
    with user_errors():
        pairs = list_pairs(Options(input=input, output=output, cache=cache, algorithms=[algo], workers=workers,
                                   isometric=isometric), threshold)
    if fmt == "json":
        json.dump([{"a": a, "b": b, "distance": d} for a, b, d in pairs], sys.stdout, indent=1,
                  ensure_ascii=True)
        sys.stdout.write("\n")
    else:
        w = csv.writer(sys.stdout)
        w.writerow(["path_a", "path_b", "distance"])
        for a, b, d in pairs:
            w.writerow([printable(a), printable(b), d])


def effective_settings(ctx: typer.Context) -> tuple[dict, dict]:
    """The main command's settings: command line > config file > built-in default.
    Returns (values, sources) by option name."""
    from .config import find_config, normalise

    cmd = ctx.command if ctx.parent is None else ctx.parent.command
    defaults = {p.name: p.default for p in cmd.params if p.name not in ("version",)}
    values = dict(ctx.params) if ctx.parent is None else dict(defaults)
    sources = {k: "default" for k in defaults}
    found = find_config()
    file_values = normalise(found[0], defaults, found[1]) if found else {}
    for name in defaults:
        from_cli = ctx.parent is None and ctx.get_parameter_source(name) is not None and \
            ctx.get_parameter_source(name).name in ("COMMANDLINE", "ENVIRONMENT")
        if from_cli:
            sources[name] = "command line" if ctx.get_parameter_source(name).name == "COMMANDLINE" else "environment"
        elif name in file_values:
            values[name] = file_values[name]
            sources[name] = found[1]
    return values, sources


@app.command("config")
def config_command(ctx: typer.Context) -> None:
    """Print the effective settings and where each comes from (default, mhc.toml or [tool.mhc]).

    Example: mhc config
    """
    with user_errors():
        values, sources = effective_settings(ctx)
    # TOML-like lines: they can be pasted into an mhc.toml
    for name in sorted(values):
        v = values[name]
        shown = json.dumps(str(v) if isinstance(v, Path) else v)
        out.print(f"{name.replace('_', '-')} = {shown}  # {sources[name]}", highlight=False, markup=False,
                  soft_wrap=True)


# -- presentation -------------------------------------------------------------
class _progress:
    """Rich progress bars driven by the library's ``progress(stage, done, total)`` callback."""

    LABELS = {"scan": "Scanning", "hash": "Hashing", "write": "Writing", "thumbnails": "Thumbnails"}

    @classmethod
    def label(cls, stage: str) -> str:
        if stage.startswith("pairs "):
            return "Pairs " + stage[6:]
        return cls.LABELS.get(stage, stage)

    def __enter__(self):
        self.p = Progress(
            TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False,
        )
        self.p.__enter__()
        self.tasks: dict[str, int] = {}

        def callback(stage: str, done: int, total: int) -> None:
            if stage.startswith("sweep"):
                return
            if stage.startswith("pairs") and total < 20_000:
                return  # instant for small collections: no bar
            if stage not in self.tasks:
                self.tasks[stage] = self.p.add_task(self.label(stage), total=total)
            self.p.update(self.tasks[stage], completed=done, total=total)

        return self.p, callback

    def __exit__(self, *exc):
        self.p.__exit__(*exc)


def print_summary(result: RunResult, console: Console) -> None:
    """The per-algorithm table a user picks a threshold folder from."""
    s = result.stats
    kinds = f" ({len(result.kinds) - result.videos} images, {result.videos} videos)" if result.videos else ""
    console.print(
        f"[bold]{result.found}[/] files found{kinds}, [bold]{s.hashed}[/] hashed now, [bold]{s.cached}[/] from cache, "
        f"[bold]{len(result.errors)}[/] failed  ({result.seconds:.2f} s)"
    )
    for a in result.algorithms:
        unit = "% of each --require threshold" if a.dir_override else f"{a.algorithm.bits} bits"
        t = Table(title=f"{a.key} ({unit})", title_justify="left")
        for col in ("threshold", "clusters", "files in clusters", "largest cluster", "unclustered"):
            t.add_column(col, justify="right")
        sug = a.suggestion.threshold if a.suggestion else None
        for p in a.partitions:
            mark = p.threshold == sug
            t.add_row(f"{'▶ ' if mark else ''}{p.threshold}", str(len(p.clusters)), str(p.clustered_files),
                      str(p.largest), str(len(p.unclustered)), style="bold green" if mark else None)
        console.print(t)
        if a.suggestion:
            console.print(f"[green]▶ suggested threshold {sug}[/]: {a.suggestion.explanation}", highlight=False)
    if result.errors:
        console.print(f"{len(result.errors)} file(s) could not be used, e.g. "
                      f"{printable(result.errors[0].path)}: {result.errors[0].reason}", highlight=False, markup=False)
        if not result.options.dry_run:
            console.print(f"  all of them with reasons: {os.path.join(result.output, 'errors.csv')}")
    if result.options.dry_run:
        console.print("[dim]dry run: nothing written[/]")
    else:
        console.print(f"output: {result.output}")
        if not result.options.no_report:
            console.print(f"report: {os.path.join(result.output, 'index.html')}")


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.ERROR if quiet else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_time=False, show_path=False)],
        force=True,
    )


@contextmanager
def user_errors() -> Iterator[None]:
    """User mistakes become one clear line (exit 2); Ctrl-C exits 130; never a traceback."""
    try:
        yield
    except MhcError as e:
        err.print("[red]Error:[/] ", end="")
        err.print(printable(str(e)), highlight=False, markup=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err.print("[yellow]Interrupted.[/] Hashes computed so far are kept in the cache; run again to continue.")
        raise typer.Exit(130) from None


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mhc`` and ``./cluster.py``."""
    try:
        app(args=argv, prog_name="mhc")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
