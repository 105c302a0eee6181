"""What the report shows of each file: a contact sheet's figures, as HTML.

A figure is built in Python, not in a template macro: a file appears on every threshold's
page, and at 100,000 files x 20 thresholds the macro cost minutes; its per-file part is
built once per report and reused. Every value is escaped here (``_html``), as the
templates' autoescaping would.
"""
from __future__ import annotations

import os
import shlex
import time
import urllib.parse
from pathlib import Path

import numpy as np
from markupsafe import Markup, escape

from .summary import original_ranks


def shown(value):
    """Names that are not UTF-8 are shown with escapes instead of failing the page."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return value


def _html(value: str) -> Markup:
    return escape(shown(value))


def file_url(path: str) -> str:
    """A ``file://`` URL for any path, bytes percent-encoded (also names that are not UTF-8)."""
    return "file://" + urllib.parse.quote(os.fsencode(path))


class Figures:
    """What a figure shows of each file, computed once per report."""

    def __init__(self, summary: dict, thumbs: dict[str, str]):
        self.files = summary["files"]
        self.info = summary.get("file_info") or {}
        # columns that older summaries (and runs without --crops) lack: filled once, not per
        # figure (a list of i + 1 Nones for file i made a report quadratic in the files)
        self.crop_of = self.info.get("crop_of") or [None] * len(self.files)
        self.same_file_as = self.info.get("same_file_as") or [None] * len(self.files)
        self.rank = original_ranks(summary)
        self.thumbs = thumbs
        self.root = summary.get("input", "")
        from .options import default_cache_path

        cache = summary.get("cache")
        self.cache_flag = f"--cache {shell_quote(cache)} " if cache and Path(cache) != default_cache_path() else ""
        self._static: dict[tuple[int, str], str] = {}
        self._quotes: dict[int, str] = {}
        self._flag_html = str(_html(self.cache_flag))
        self._digests = None
        self.measured_by = "hashes"  # or "metric": what the distances under pictures come from

    @property
    def digests(self) -> np.ndarray:
        """Per file, a digest of what its figure shows (see :mod:`mhc.pagedigest`)."""
        if self._digests is None:
            from .pagedigest import file_digests

            self._digests = file_digests(self.files, self.info, self.thumbs)
        return self._digests

    def page_facts(self) -> dict:
        """What every figure of a page depends on besides its file."""
        return {"cache_flag": self.cache_flag, "root": self.root, "measured_by": self.measured_by}

    def details(self, i: int) -> str:
        get = lambda k: self.info[k][i] if self.info.get(k) else None  # noqa: E731
        parts = []
        if get("width") and get("height"):
            parts.append(f"{get('width')}×{get('height')}")
        if get("bytes") is not None:
            parts.append(_size(get("bytes")))
        if get("format"):
            parts.append(str(get("format")))
        if get("taken"):
            parts.append(get("taken").replace("T", " ")[:16] + " (taken)")
        elif get("mtime"):
            parts.append(time.strftime("%Y-%m-%d %H:%M", time.localtime(get("mtime") / 1e9)) + " (modified)")
        return " · ".join(parts)

    def figure(self, i: int, rel: str, *, original: int | None = None, distance: int | None = None) -> Markup:
        """One picture of a contact sheet, as HTML (every value escaped here). Written in
        Python, not a template macro: a file appears on every threshold's page, and at
        100,000 files x 20 thresholds the macro cost minutes; the per-file part is built
        once and reused."""
        static = self._static.get((i, rel))
        if static is None:
            path = self.files[i]
            thumb = self.thumbs.get(path)
            prefix = self.root.rstrip("/") + "/"
            # a slice, not os.path.relpath (15 us a call, 100,000s of figures): discovery's
            # paths are absolute and normalised, so the prefix is the relative path's root
            name = path[len(prefix):] if self.root and path.startswith(prefix) else path
            img = (f'<img loading=lazy decoding=async alt="" src="{_html(rel + urllib.parse.quote(thumb))}">'
                   if thumb else "<div class=missing>no preview</div>")
            static = (f'<a href="{_html(file_url(path))}" title="{_html(path)}">{img}</a>\n<figcaption>'
                      f'<span class=path>{_html(name)}</span><span class=details>{_html(self.details(i))}</span>'
                      f'{self._crop(i)}{self._same_file(i)}')
            self._static[(i, rel)] = static
        if original is None or i == original:
            tail = "<span class=badge>probable original</span> " if i == original else ""
            return Markup(f"<figure{' class=original' if i == original else ''}>{static}{tail}\n</figcaption></figure>")
        d = f"<span class=d>distance {distance} to the probable original</span>" if distance is not None else ""
        if self._first_name(i) == self._first_name(original):  # one file: "not a duplicate?" makes no sense
            return Markup(f"<figure>{static}{d}\n</figcaption></figure>")
        # escaping is per piece (the escape of a concatenation is the concatenation of the
        # escapes): each path is quoted and escaped once per report, not once per figure
        ignore = f"mhc ignore {self._flag_html}{self._quoted(original)} {self._quoted(i)}"
        return Markup(f"<figure>{static}{d}\n<details class=ignore><summary>not a duplicate?</summary>"
                      f"<code>{ignore}</code></details></figcaption></figure>")

    def _crop(self, i: int) -> str:
        """'crop of NAME (62 %)' under a picture confirmed as a crop of another (--crops)."""
        of = self.crop_of[i]
        if not of:
            return ""
        src, area = of
        return (f'<span class=crop title="{_html(self.files[src])}">crop of {_html(self._name(src))} '
                f'({area:.0%} of it)</span>')

    def _first_name(self, i: int) -> int:
        """The first listed name of file ``i`` (``i`` itself unless it is a hard link of an
        earlier one)."""
        j = self.same_file_as[i]
        return j if isinstance(j, int) and 0 <= j < len(self.files) else i  # (an edited summary.json: itself)

    def _same_file(self, i: int) -> str:
        """'same file as NAME' under a hard link of a file listed before it: deleting
        either name frees no space, which two pictures side by side would not tell."""
        j = self._first_name(i)
        if j == i:
            return ""
        return (f'<span class=crop title="{_html(self.files[j])}">same file as {_html(self._name(j))} (a hard link: '
                f'removing one frees no space)</span>')

    def _name(self, i: int) -> str:
        """A file's path under the input (its full path if it is not under it)."""
        prefix = self.root.rstrip("/") + "/"
        return self.files[i][len(prefix):] if self.root and self.files[i].startswith(prefix) else self.files[i]

    def _quoted(self, i: int) -> str:
        q = self._quotes.get(i)
        if q is None:
            q = self._quotes[i] = str(_html(shell_quote(self.files[i])))
        return q


def shell_quote(path: str) -> str:
    """``path`` for a shell command line the user pastes. A name that is not UTF-8, or holds
    control characters, is written byte by byte in bash's ``$'\\xHH'`` quoting: shlex's
    quotes would carry its bytes as text the page cannot show (they became a literal
    "\\xe9" that names no file)."""
    raw = os.fsencode(path)
    try:
        raw.decode("utf-8")
        plain = all(b >= 32 and b != 127 for b in raw)
    except UnicodeDecodeError:
        plain = False
    if plain:
        return shlex.quote(path)
    return "$'" + "".join(chr(b) if 32 <= b < 127 and b not in b"\\'" else f"\\x{b:02x}" for b in raw) + "'"


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""
