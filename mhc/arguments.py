"""How mhc's commands read their command line, before and around click's own parsing:
``--help`` shown as a flag, ``~`` expanded in every path, and the slips click would answer
with something unhelpful (an empty value, a folder given without its option) refused in
one line that says what to type."""
from __future__ import annotations

import os
from pathlib import Path

import typer

from .errors import MhcError
from .stopping import Stopped

# click's base class of usage errors, taken from typer: recent typers carry their own copy of
# click (typer._click), older ones use click itself
ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
_ClickUsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


class _CommandLine:
    """What every mhc command does with its command line: --help is a flag (shown without
    a value type, like every other flag), and a path that starts with ``~`` is in the home
    folder even where the shell leaves it as it is (``--output=~/x``, a quoted "~/x"): a
    folder named ``~`` made in the current one is never what was meant, and invites an
    ``rm -rf ~`` to clean it up. (mhc.toml's paths: mhc.config.)"""

    def get_help_option(self, ctx):
        opt = super().get_help_option(ctx)
        if opt is not None:
            opt.metavar = ""
        return opt

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt as e:  # (a signal while click reads the command line: see Stopped)
            raise Stopped(e, "Nothing was done.") from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as e:  # (one that came after a command's own handling: see Stopped)
            raise Stopped(e) from None

    def parse_args(self, ctx, args):
        _refuse_empty(self, ctx, args)
        _refuse_bare_folder(self, ctx, args)
        try:
            rest = super().parse_args(ctx, args)
        except _ClickUsageError as e:
            # click's parser raises "Option '--labels' requires an argument" without its
            # context, so the line named `mhc -h` instead of the command's own help
            e.ctx = e.ctx or ctx
            raise
        for name, value in ctx.params.items():
            try:
                ctx.params[name] = home(value)
            except MhcError as e:  # (outside every user_errors(): click's own kind of usage error)
                opts = next(("/".join(p.opts) + " " for p in self.get_params(ctx)
                             if p.name == name and p.param_type_name == "option"), "")
                raise _ClickUsageError(f"{opts}{e}", ctx) from None
        return rest


def _refuse_empty(cmd, ctx, args: list[str]) -> None:
    """An empty value (``-i "$DIR"`` with DIR unset) is refused, naming the option: as a path,
    "" is the current folder, and a run over whatever is there is never what was meant."""
    options = {o: p for p in cmd.get_params(ctx) if p.param_type_name == "option" and not p.is_flag for o in p.opts}
    commands = getattr(cmd, "commands", {})
    for k, arg in enumerate(args):
        if arg in commands:  # a subcommand's own arguments are its to check
            return
        name, eq, value = arg.partition("=")
        if arg.startswith("--") and eq and not value and name in options:
            raise _ClickUsageError(f"{name} is empty (an unset shell variable?); give it a value", ctx)
        if arg == "":
            before = args[k - 1] if k else ""
            what = f"{before} is empty" if before in options else "an argument is empty"
            raise _ClickUsageError(f"{what} (an unset shell variable?); give it a value", ctx)


def _refuse_bare_folder(cmd, ctx, args: list[str]) -> None:
    """A folder given without its option (``mhc ~/Pictures``, ``mhc report data/output``, as
    fdupes and czkawka take theirs) is refused with the option it needs, where click would
    say "No such command" or "unexpected extra argument"."""
    params = cmd.get_params(ctx)
    if any(p.param_type_name == "argument" for p in params):  # (ignore, evaluate: paths are theirs)
        return
    opts = {o for p in params for o in p.opts}
    takes_value = {o for p in params if p.param_type_name == "option" and not p.is_flag for o in p.opts}
    after_option = False
    for arg in args:
        if after_option or arg.startswith("-"):
            after_option = not after_option and arg in takes_value
            continue
        if arg in getattr(cmd, "commands", {}):  # a subcommand's own arguments are its to check
            return
        path = Path(arg).expanduser()
        if not (path.exists() or os.sep in arg):
            return
        # an mhc output goes to -o; another folder to -i, or to -o where -i is already given
        # (``mhc -i ~/Pictures /tmp/clusters``, as cp takes its source and destination)
        order = ("-o", "-i") if (path / "summary.json").is_file() else ("-i", "-o")
        given = {o for p in params if any(a.split("=")[0] in p.opts for a in args) for o in p.opts}
        flag = next((f for f in order if f in opts and f not in given), None)
        if flag is None:
            return
        if path.exists() and not path.is_dir():  # `mhc photo.jpg`: the folder that holds it is what -i takes
            if flag != "-i":
                return
            folder = os.path.dirname(arg) or "."
            raise _ClickUsageError(f"{arg} is a file; mhc scans folders: give the one that holds it with -i "
                                   f"({ctx.command_path} -i {folder})", ctx)
        what = "an output folder" if flag == "-o" else "the folder to scan"
        raise _ClickUsageError(f"{arg}: {what} is given with {flag} ({ctx.command_path} {flag} {arg})", ctx)


def home(value):
    """``value`` with ``~`` expanded if it is a path (or a list of them), else as it is."""
    if isinstance(value, Path):
        from .config import expand_home

        return Path(expand_home(str(value)))
    if isinstance(value, (list, tuple)) and any(isinstance(v, Path) for v in value):
        return type(value)(home(v) for v in value)
    return value


class FlagHelpGroup(_CommandLine, typer.core.TyperGroup):
    pass


class FlagHelpCommand(_CommandLine, typer.core.TyperCommand):
    pass
