"""Whether a value fits an option's declared type, and how to name that type: options
built in Python and values read from ``mhc.toml`` are checked the same way."""
from __future__ import annotations

import typing
from pathlib import Path
from typing import Any, Literal


def type_ok(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the declared type (bool is not an int here)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        return any(type_ok(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is Literal:
        return isinstance(value, str) and value in args
    if origin is list:
        return isinstance(value, (list, tuple)) and all(type_ok(v, args[0]) for v in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is Path:
        return isinstance(value, (str, Path))
    return isinstance(value, hint)


def describe_type(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is list:
        return "a list of " + {str: "texts", int: "whole numbers"}.get(args[0], str(args[0]))
    if args and type(None) in args:
        return describe_type(next(a for a in args if a is not type(None)))
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a text",
            Path: "a path (text)"}.get(hint, str(hint))


def describe_option(name: str, hint: Any) -> str:
    """:func:`describe_type` of an option's value; for ``thresholds``, what
    :func:`thresholds_text` also takes (its declared type would say only "a text")."""
    if name == "thresholds":
        return 'a text such as "0:19:1", "0%:30%:2%" or "2,5,10", a whole number, or a list of them'
    return describe_type(hint)


def thresholds_text(value: Any) -> Any:
    """Thresholds given as a number or a list of numbers and ranges (``10``, ``[2, 5, 10]``,
    ``range(0, 20, 2)``, ``[0, "4:8:2"]``: mhc.toml's and Python's ways) as the text ``-t``
    takes (``"2,5,10"``); any other value as it is (then refused by its type)."""
    if type(value) is int:  # (not a bool)
        return str(value)
    if isinstance(value, (list, tuple, range)) and len(value) and all(type(v) in (int, str) for v in value):
        return ",".join(map(str, value))
    return value

