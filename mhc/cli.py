"""The ``mhc`` command: a thin layer over :func:`mhc.run` (typer + rich).

Its options are generated from the declarations in :mod:`mhc.options` (one source for
the dataclass, the command line, ``mhc.toml`` and ``mhc config``). Every fault ends in one
line and an exit status (see :mod:`mhc.errors`); a traceback only with ``MHC_DEBUG=1``.
"""
from __future__ import annotations

import inspect
import logging
import os
import re
import sys
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from . import __version__
from .algorithms import DESCRIPTIONS
from .arguments import ClickException, FlagHelpCommand, FlagHelpGroup
from .errors import EXIT_INTERRUPTED, EXIT_PARTIAL, EXIT_USAGE, MhcError, UsageError, printable, resource_fault
from .events import ProgressEvent
from .options import Options, default_of, fields
from .pipeline import run
from .stopping import INTERRUPTED, Stopped, signals_as_exceptions
from .streams import guarded_streams
from .thresholds import THRESHOLDS_HELP

EPILOG = escape("""[bold]Examples[/bold]

  mhc                                         data/images -> data/output, default algorithms
  mhc -i ~/Pictures -o /tmp/clusters -a phash_16 -a dhash_8
  mhc -a phash_8 --thresholds 0:12:2          thresholds 0, 2, ..., 12 bits
  mhc -a phash_16 --thresholds 0%:20%:2%      the same as percentages of the 256 bits
  mhc --preset image-clustering               image-clustering's 14 algorithms
  mhc --dry-run                               compute and print, write nothing
  mhc -i ~/Videos --frames 30 --cross-media   videos too, and stills that match their frames
  mhc cache info                              where the hash cache is, what it holds
""").replace("\\[bold]", "[bold]").replace("\\[/bold]", "[/bold]") + "\n\n" + escape(
    "Algorithms (NAME_SIZE): " + "; ".join(f"{k}: {v}" for k, v in DESCRIPTIONS.items()) + "; avhash = ahash.") + \
    "\n\n" + escape("Thresholds: " + THRESHOLDS_HELP) + "\n\n" + escape(
    "Output: OUT/<algo>_<size>/thr_NNN_unclustered_U/RANK_SIZE/<stem>_<hash><ext> -> original; every file "
    "appears once per threshold folder; open the folders in an image viewer, or OUT/index.html.") + "\n\n" + \
    escape("Exit status: 0 done; 1 done, part failed; 2 bad option or path; 3 the machine refused (disk full, "
           "read-only, locked, unreachable); 130 interrupted; 143 stopped by SIGTERM; 129 by SIGHUP; 70 a bug "
           "in mhc.")

def command(group: typer.Typer, name: str):
    """``@command(app, "name")``: a subcommand whose docstring is its help, escaped (rich
    would take ``[tool.mhc]`` or ``mhc[dask]`` for markup and drop them), --help a flag. Each
    paragraph becomes one line: rich keeps a docstring's line breaks, which wrapped at another
    width leave ragged half-lines."""
    def register(fn):
        doc = "\n\n".join(" ".join(par.split()) for par in (inspect.getdoc(fn) or "").split("\n\n"))
        return group.command(name, cls=FlagHelpCommand, help=escape(doc))(fn)
    return register


app = typer.Typer(
    cls=FlagHelpGroup,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    help="mhc (MediaHashCluster): group duplicate and near-duplicate images and videos by perceptual hashing.\n\n"
    "Hashes every image and video under --input once per algorithm (cached; videos by sampled frames), then for "
    "each threshold of a sweep links files whose hashes differ by at most that many bits and writes the groups as "
    "folders of symlinks, largest first, with an HTML report. Your files are only ever read.",
    epilog=EPILOG,
)
# emoji=False: rich turns ":name:" into an emoji, and user text has colons ("-t 0:100:0"
# was printed back as "0💯0")
err = Console(stderr=True, emoji=False)
out = Console(emoji=False)
EXIT_BUG = 70


def _cli_type(hint) -> tuple[object, bool]:
    """The type typer sees for a declared option, and whether it is a list."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        return Optional[list[str]], True
    if origin is typing.Literal:
        return str, False
    if args and type(None) in args:
        inner = next(a for a in args if a is not type(None))
        return Optional[inner], False
    return hint, False


def _main_parameters() -> list[inspect.Parameter]:
    params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
    for f, spec, hint in fields():
        kind, is_list = _cli_type(hint)
        default = default_of(f)
        flag = hint is bool
        info = typer.Option(*spec.flags, help=escape(spec.help), rich_help_panel=spec.panel, envvar=spec.envvar,
                            metavar="" if flag else spec.metavar, show_default=not (flag or is_list or default is None))
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[kind, info],
                                        default=None if is_list else default))
    params.append(inspect.Parameter("quiet", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[
        bool, typer.Option("-q", "--quiet", help="No progress bars or tables; warnings and errors only.",
                           rich_help_panel="Input and output", metavar="")]))
    params.append(inspect.Parameter("version", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.", metavar="")]))
    return params


def _version(value: bool) -> None:
    if value:
        out.print(f"mhc {__version__}")
        raise typer.Exit()


def main_command(ctx: typer.Context, **kw) -> None:
    if ctx.invoked_subcommand is not None:
        _refuse_run_options_before(ctx, ctx.invoked_subcommand)
        return
    quiet = kw.pop("quiet")
    with user_errors():
        values, sources = effective_settings(ctx)
        if values["no_cache"] and values["cache"] is not None and sources["cache"] == sources["no_cache"]:
            # both on one command line (or in one file): which was meant? (mhc.toml's cache
            # with --no-cache for one run is fine: the command line wins)
            where = "" if sources["cache"] == "command line" else f" in {sources['cache']}"
            raise UsageError(f"--cache {values['cache']} and --no-cache{where} contradict each other; give one of them")
        options = options_from(values)
    _setup_logging(quiet)
    with user_errors(no_cache=options.no_cache, output=True), _naming_the_file(sources):
        if quiet:
            result = run(options)
        else:
            with _progress() as callback:
                result = run(options, progress=callback)
    if not quiet:
        from .streams import StdoutClosed, StdoutFault
        from .terminal import print_summary

        try:
            print_summary(result, out)
        except KeyboardInterrupt as e:  # the run had finished: said so, with the signal's own status
            done = "" if options.dry_run else \
                f"The run had finished; its output is complete: {printable(result.output)}"
            raise Stopped(e, done) from None
        except StdoutClosed:  # >&-: the summary is not wanted (as with -q); the run's result is its output
            pass
        except StdoutFault as e:  # not "the previous output is unchanged": it was replaced
            done = "" if options.dry_run else f"; its output is complete: {printable(result.output)}"
            raise StdoutFault(f"{e}; the run itself finished{done}") from None
        except Exception as e:  # a bug in the summing up: main() says so, and that the output is whole
            if not options.dry_run:
                e.output_replaced = result.output  # type: ignore[attr-defined]
            raise
    if result.disk_errors:  # the disk failed part of the work (the summary said so, or with -q this line)
        if quiet:
            from .terminal import disk_errors_line

            err.print(disk_errors_line(result.disk_errors, alone=True), highlight=False, markup=False,
                      soft_wrap=True)
        raise typer.Exit(EXIT_PARTIAL)


main_command.__signature__ = inspect.Signature(_main_parameters())  # type: ignore[attr-defined]
app.callback(invoke_without_command=True)(main_command)


def _refuse_run_options_before(ctx: typer.Context, sub: str) -> None:
    """``mhc -o out report``: options before a command are the run's, and the command
    went on with its own defaults (``mhc -o out cache clear`` cleared the default cache, not
    out's). Refused, saying where they go; ``mhc -a X config`` is right (config shows them)."""
    if sub == "config":
        return
    typed = [p for p in ctx.command.params
             if (src := ctx.get_parameter_source(p.name)) is not None and src.name == "COMMANDLINE"]
    if typed:
        flags = " ".join("/".join(p.opts) for p in typed)
        raise UsageError(f"{flags} before '{sub}' would be ignored: a command's options go after it "
                         f"(mhc {sub} ... {typed[0].opts[0]} ...)")


@contextmanager
def _naming_the_file(sources: dict[str, str]) -> Iterator[None]:
    """A refused value that came from mhc.toml or pyproject.toml says so: "--workers must
    be 0 or more" sent the user looking for a --workers they never typed."""
    try:
        yield
    except UsageError as e:
        flag = re.search(r"(?<![\w-])--([a-z][\w-]*)", str(e))  # the first option the line names
        name, spec = next(((f.name, spec) for f, spec, _ in fields() if flag and spec.long == flag.group(1)),
                          (None, None))
        where = sources.get(name, "default") if name else "default"
        if where in ("default", "command line") or (where == "environment" and not spec.envvar):
            raise
        raise UsageError(f"{e} (set {f'by {spec.envvar}' if where == 'environment' else f'in {where}'})") from None


def options_from(values: dict) -> Options:
    """Options from the main command's settings (lists given as None are empty)."""
    kw = {}
    for f, _, hint in fields():
        v = values[f.name]
        if typing.get_origin(hint) is list:
            v = list(v or [])
        kw[f.name] = v
    return Options(**kw)


def effective_settings(ctx: typer.Context) -> tuple[dict, dict]:
    """The main command's settings: command line > config file > built-in default.
    Returns (values, sources) by option name."""
    from .config import find_config, normalise

    root = ctx.find_root()
    values = {f.name: root.params.get(f.name, default_of(f)) for f, _, _ in fields()}
    sources = {name: "default" for name in values}
    found = find_config()
    file_values = normalise(*found) if found else {}
    for name in values:
        src = root.get_parameter_source(name)
        if src is not None and src.name in ("COMMANDLINE", "ENVIRONMENT"):
            sources[name] = "command line" if src.name == "COMMANDLINE" else "environment"
        elif name in file_values:
            values[name] = file_values[name]
            sources[name] = found[1]
    return values, sources


# -- presentation -------------------------------------------------------------
LABELS = {"scan": "Scanning", "hash": "Hashing", "write": "Writing", "thumbnails": "Thumbnails",
          "report": "Report", "hydrus": "Sending"}


@contextmanager
def _progress() -> Iterator:
    """Rich progress bars driven by the library's progress events."""
    bars = Progress(TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=err, transient=False)
    tasks: dict[tuple[str, str], int] = {}

    def callback(e: ProgressEvent) -> None:
        if e.stage == "pairs" and e.total < 20_000:
            return  # instant for small collections: no bar
        key = (e.stage, e.detail)
        if key not in tasks:
            if not tasks:
                bars.start()
            label = f"Pairs {e.detail}" if e.stage == "pairs" else LABELS.get(e.stage, e.stage)
            tasks[key] = bars.add_task(label, total=e.total)
        bars.update(tasks[key], completed=e.done, total=e.total)

    # started at the first event, not before: a run that stops at a bad option draws nothing,
    # so its error is the only line (a started, empty display leaves a blank line on stop)
    try:
        yield callback
    finally:
        if tasks:
            bars.stop()


class _LineHandler(logging.Handler):
    """Each warning as one line on stderr: printed by the console that draws the progress bars
    (so it lands above them), never hard-wrapped (rich's RichHandler breaks lines at the
    console's width, 80 columns when stderr is not a terminal, which splits paths)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            err.print(printable(self.format(record)), soft_wrap=True, markup=False, highlight=False)
        except Exception:  # noqa: BLE001  (logging's convention: a failing handler reports, never raises)
            self.handleError(record)


def _setup_logging(quiet: bool) -> None:
    # warnings (a read-only cache, a damaged one set aside) are shown with -q too
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[_LineHandler()], force=True)
    from .pool import quiet_decoders

    quiet_decoders()  # (files decoded in this process: a small run, -j 1, the report's thumbnails)


def _error_line(message: str) -> None:
    # soft_wrap: one line whatever the width (the terminal wraps it, rich does not break it)
    err.print("[red]Error:[/] ", end="")
    err.print(printable(message), highlight=False, markup=False, soft_wrap=True)


@contextmanager
def user_errors(no_cache: bool = False, output: bool = False) -> Iterator[None]:
    """One line per fault, with its exit status; Ctrl-C exits 130; never a traceback
    (unless MHC_DEBUG=1, for reporting a bug). ``output``: the command writes an output
    folder (the main command, report), which the lines then say is unchanged."""
    try:
        yield
    except MhcError as e:
        _error_line(str(e))
        raise typer.Exit(e.exit_code) from None
    except KeyboardInterrupt as e:
        kept = "nothing was saved (--no-cache)" if no_cache else \
            "hashes computed so far are kept in the cache; run again to continue"
        what = getattr(e, "said", INTERRUPTED)  # Terminated and HungUp say which signal
        try:  # after SIGHUP the terminal may be gone: writing to it fails (EIO)
            if getattr(e, "output_replaced", False):  # it came while the new tree was swapped in
                err.print(f"[yellow]{what}[/] The new output was already in place and is complete"
                          f"{' (nothing was cached: --no-cache)' if no_cache else '; every hash is in the cache'}.",
                          soft_wrap=True)
            elif output:
                err.print(f"[yellow]{what}[/] The previous output is unchanged; {kept}.", soft_wrap=True)
            else:  # (mhc pairs, hydrus push: no output folder to speak of)
                err.print(f"[yellow]{what}[/] {kept[0].upper()}{kept[1:]}.", soft_wrap=True)
        except OSError:
            pass
        raise typer.Exit(getattr(e, "status", EXIT_INTERRUPTED)) from None
    except (typer.Exit, BrokenPipeError):  # the reader of stdout is gone (| head): click ends it quietly
        raise
    except Exception as e:  # a bug: one line, and how to get the details
        if os.environ.get("MHC_DEBUG"):
            raise
        raise typer.Exit(_unexpected(e, output)) from None


def _unexpected(e: Exception, output: bool = True) -> int:
    """One line for an exception no stage turned into an MhcError, and its exit status: the
    machine out of memory, threads, file descriptors or processes (wherever that struck),
    else a bug."""
    # after the commit (summing up, releasing the output) the new tree is in place: saying
    # "the previous output is unchanged" then would send the user looking for a lost run
    replaced = getattr(e, "output_replaced", None)
    state = (f"The run's new output is in place and complete: {printable(replaced)}." if replaced
             else "The previous output is unchanged." if output else "")
    short = resource_fault(e)
    if short is not None:
        _error_line(f"{short}. {state}".rstrip())
        return short.exit_code
    err.print(f"[red]mhc failed unexpectedly:[/] {escape(type(e).__name__)}: {escape(str(e))}. "
              f"{escape(state + ' ' if state else '')}Please report it; MHC_DEBUG=1 shows the details.",
              highlight=False, soft_wrap=True)
    return EXIT_BUG


# click's words for a value of the wrong type, in mhc's (and with what would do)
_PLAINER = {"Input should be a valid integer, unable to parse string as an integer": "a whole number is needed, e.g. 4",
            "Input should be a valid number, unable to parse string as a number": "a number is needed, e.g. 0.05"}


def _working_folder_gone() -> bool:
    try:
        os.getcwd()
    except FileNotFoundError:
        return True
    return False


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mhc`` and ``./cluster.py``: returns the exit status."""
    from . import commands  # noqa: F401  (registers the subcommands)
    from .stopping import end_start_guard

    end_start_guard()  # (everything is loaded: from here on signals_as_exceptions and user_errors say what was done)

    args = sys.argv[1:] if argv is None else argv
    if _working_folder_gone() and not {"-h", "--help", "--version"} & set(args):
        # a shell left in a folder of an output that a run has since replaced: every relative
        # path, and mhc.toml's lookup, would fail ("mhc failed unexpectedly", exit 70)
        _error_line("the current folder no longer exists (deleted, or a folder of an mhc output that a run has "
                    "replaced since you entered it); cd to a folder that exists and run again")
        return EXIT_USAGE
    try:
        # standalone_mode=False: click's usage errors come here instead of typer's boxed
        # usage panel (six lines); they end in one line like every other fault
        with signals_as_exceptions(), guarded_streams():  # the command line's, not the library's
            rv = typer.main.get_command(app).main(args=argv, prog_name="mhc", standalone_mode=False)
    except MhcError as e:  # outside a command's user_errors(): writing its results, or --help, to stdout
        _error_line(str(e))
        return e.exit_code
    except ClickException as e:
        ctx = getattr(e, "ctx", None)
        if e.format_message():  # (`mhc cache` alone: click printed the help; no message)
            text = e.format_message().rstrip(".")
            for theirs, ours in _PLAINER.items():
                text = text.replace(theirs, ours)
            if ctx is not None and ctx.command_path == "mhc config" and ctx.parent is not None:
                run_opts = {o for p in ctx.parent.command.params for o in p.opts}
                typed = text.removeprefix("No such option: ").split()[0] if text.startswith("No such option") else ""
                if typed in run_opts:  # `mhc config -a phash_16`: the run's settings it shows are set before it
                    text += f" here; a run's options go before the command: mhc {typed} ... config"
            _error_line(f"{text}; {ctx.command_path if ctx else 'mhc'} -h lists the options")
        return e.exit_code
    except (Stopped, KeyboardInterrupt) as e:
        # a signal in click's own code (reading the command line, printing results: Stopped),
        # or before it (typer building the commands: a KeyboardInterrupt, Terminated included)
        stop = e if isinstance(e, Stopped) else Stopped(e, "Nothing was done.")
        try:
            err.print(f"[yellow]{stop.said}[/]{' ' + stop.done if stop.done else ''}", soft_wrap=True)
        except OSError:  # (after SIGHUP the terminal may be gone)
            pass
        return stop.status
    except typer.Abort:  # end of input at a prompt; mhc has none, but click may raise it
        return EXIT_INTERRUPTED
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except Exception as e:  # outside every user_errors(): still one line, never a traceback
        if os.environ.get("MHC_DEBUG"):
            raise
        return _unexpected(e, output=False)  # (a run writes its output inside user_errors, which says so)
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":  # python -m mhc.cli: run the real module (this copy, __main__, has no subcommands)
    from mhc.cli import main as _main

    sys.exit(_main())
