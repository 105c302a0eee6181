"""Defaults from a config file: ``mhc.toml`` in the working folder, or ``[tool.mhc]`` in its
``pyproject.toml``. Keys are the long option names (``algo``, ``thresholds``, ``workers``,
``frames``, ``output``...; dashes or underscores). The command line overrides the file.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ALIASES = {"algorithms": "algo", "algos": "algo", "a": "algo", "i": "input", "o": "output", "j": "workers",
           "t": "thresholds"}


def find_config(folder: Path | None = None) -> tuple[dict, str] | None:
    """The settings of the config file that applies in ``folder`` and where they came from."""
    folder = folder or Path.cwd()
    own = folder / "mhc.toml"
    if own.is_file():
        return _read(own), str(own)
    py = folder / "pyproject.toml"
    if py.is_file():
        doc = _read(py)
        tool = doc.get("tool", {}).get("mhc")
        if isinstance(tool, dict):
            return tool, f"{py} [tool.mhc]"
    return None


def _read(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read {path}: {e}; fix the file or remove it") from None


def normalise(settings: dict, known: dict[str, object], source: str) -> dict:
    """Settings with option names (dashes -> underscores, aliases), checked against ``known``
    (option name -> default value, whose type the setting must match)."""
    out = {}
    for key, value in settings.items():
        name = ALIASES.get(key.replace("-", "_"), key.replace("-", "_"))
        if name not in known:
            raise UsageError(f"unknown setting {key!r} in {source}; known: {', '.join(sorted(known))}")
        default = known[name]
        if isinstance(default, bool) and not isinstance(value, bool):
            raise UsageError(f"{key} in {source} must be true or false")
        if name == "algo" and isinstance(value, str):
            value = value.split()
        if isinstance(default, int) and not isinstance(default, bool) and not isinstance(value, int):
            raise UsageError(f"{key} in {source} must be a whole number")
        out[name] = value
    return out
