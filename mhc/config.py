"""Defaults from a config file: ``mhc.toml`` in the working folder, or ``[tool.mhc]`` in its
``pyproject.toml``. Keys are the long option names (``algo``, ``thresholds``, ``workers``,
``frames``, ``output``...; dashes or underscores). The command line overrides the file.

Values are checked against the options' declared types (:mod:`mhc.options`): a wrong
one is refused with its key, line and the type expected, never a traceback.
"""
from __future__ import annotations

import difflib
import json
import os
import re
import sys
from pathlib import Path

from .errors import UsageError
from .options import fields
from .valuetypes import describe_option, thresholds_text, type_ok

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ALIASES = {"algorithms": "algo", "algos": "algo", "a": "algo", "i": "input", "o": "output", "j": "workers",
           "t": "thresholds"}


def find_config(folder: Path | None = None) -> tuple[dict, str, str] | None:
    """(settings, where they came from, the file's text) of the config file that applies
    in ``folder`` (default: the working folder), or None."""
    folder = folder or Path.cwd()
    own = folder / "mhc.toml"
    if own.is_file():
        text = _text(own)
        return _parse(own, text), str(own), text
    py = folder / "pyproject.toml"
    if py.is_file():
        text = _text(py)
        tool = _parse(py, text).get("tool", {}).get("mhc")
        if isinstance(tool, dict):
            return tool, f"{py} [tool.mhc]", text
    return None


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {path} ({e}); fix the file or remove it") from None


def _parse(path: Path, text: str) -> dict:
    try:
        return tomllib.loads(text)
    except ValueError as e:
        raise UsageError(f"{path} is not valid TOML ({e}); fix the file or remove it") from None


def normalise(settings: dict, source: str, text: str = "") -> dict:
    """Settings by option (field) name, each checked against its declared type."""
    by_key = {spec.long.replace("-", "_"): (f.name, hint) for f, spec, hint in fields()}
    by_key.update({f.name: (f.name, hint) for f, _, hint in fields()})
    out = {}
    for key, value in settings.items():
        norm = ALIASES.get(key.replace("-", "_"), key.replace("-", "_"))
        if norm not in by_key and isinstance(value, dict):  # [mhc] or [tool.mhc], as in pyproject.toml
            header = next(((n, line.strip()) for n, line in enumerate(text.splitlines(), 1)
                           if re.match(rf"^\s*\[+\s*{re.escape(key)}\b", line)), None)
            what = f"{header[1]} (line {header[0]})" if header else f"[{key}]"
            if source.endswith("mhc.toml"):
                raise UsageError(f"{source} has a section {what}: mhc.toml has none; write the settings at the "
                                 f"top of the file, e.g. input = \"photos\"")
            raise UsageError(f"{source} has a table {key!r}: [tool.mhc] takes settings only, e.g. input = \"photos\"")
        if norm not in by_key:
            longs = sorted(spec.long for _, spec, _ in fields())
            names = {**{a.replace("_", "-"): v for a, v in ALIASES.items() if len(a) > 1}, **{n: n for n in longs}}
            near = difflib.get_close_matches(key.replace("_", "-"), names, n=1, cutoff=0.7)
            hint = f"did you mean {names[near[0]]}? " if near else ""
            raise UsageError(f"unknown setting {key!r} in {source}{_line(text, key)}; {hint}known: {', '.join(longs)}")
        name, hint = by_key[norm]
        if norm == "algo" and isinstance(value, str):  # algo = "phash_8 dhash_8"
            value = value.split()
        if name in ("require", "exclude") and isinstance(value, str):  # one of them
            value = [value]
        if name == "thresholds":  # thresholds = 10 or [2, 5, 10], as -t 10 or -t 2,5,10
            value = thresholds_text(value)
        if not type_ok(value, hint):
            raise UsageError(f"{key} in {source}{_line(text, key)} must be {describe_option(name, hint)}, not "
                             f"{json.dumps(value, default=str)}")
        # ~ is the home folder, as on the command line (where the shell expands it)
        try:
            out[name] = Path(expand_home(value)) if isinstance(value, str) and _is_path(hint) else value
        except UsageError as e:
            raise UsageError(f"{key} in {source}{_line(text, key)}: {e}") from None
    return out


def expand_home(path: str) -> str:
    """``~`` and ``~user`` at the start of a path, as the shell expands them (it does not
    after ``--output=``, in quotes or in mhc.toml). A user who does not exist is refused:
    left as it is, the path would make a folder named ``~user`` in the current one. An empty
    path is refused too: it would be the current folder."""
    if not path.strip():
        raise UsageError("the path is empty; write the folder's or file's path, or leave the setting out")
    if not path.startswith("~"):
        return path
    expanded = os.path.expanduser(path)
    if expanded.startswith("~"):
        user = path[1:].split(os.sep, 1)[0]
        raise UsageError(f"{path}: there is no user {user!r} for ~{user} to stand for; write the folder's whole path")
    return expanded


def _is_path(hint) -> bool:
    return "Path" in str(hint)


def _line(text: str, key: str) -> str:
    for n, line in enumerate(text.splitlines(), 1):
        if re.match(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=", line):
            return f" (line {n})"
    return ""


def toml_lines(values: dict, sources: dict) -> list[str]:
    """The effective settings as TOML that can be pasted into an mhc.toml: real values
    (the default algorithms, the cache's path...); settings that are off are comments."""
    from .algorithms import DEFAULT_ALGORITHMS
    from .decode import DecodeSettings
    from .options import default_cache_path

    real = {"algorithms": lambda v: v or list(DEFAULT_ALGORITHMS),
            "cache": lambda v: v or default_cache_path(),
            "max_pixels": lambda v: v or DecodeSettings().max_pixels}
    lines = []
    for f, spec, _ in fields():
        v = values[f.name]
        v = real[f.name](v) if f.name in real else v
        src = sources[f.name]
        if v is None:
            off = {"thresholds": "per hash size (see mhc --help)", "preset": "none", "verify": "off",
                   "dask": "hash locally"}.get(f.name, "not set")
            lines.append(f"# {spec.long} = ...  # {src}: {off}")
        else:
            lines.append(f"{spec.long} = {_toml(v)}  # {src}")
    return lines


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return json.dumps(str(v), ensure_ascii=False)  # a TOML basic string
