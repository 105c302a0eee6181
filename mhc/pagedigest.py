"""Digests of report pages, so a rerun rewrites only the pages whose content changed.

A page's digest covers everything it shows: the renderer (report code and templates), the
page's own settings (navigation, counts, notes) and, per picture, the file (path, facts,
thumbnail) and its hash under the page's algorithm (distances and chains follow from the
hashes and the algorithm's settings, which are covered too). It is computed without
rendering: at 100,000 files a one-file rerun renders a few dozen pages, not 700.
"""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np


@functools.lru_cache(maxsize=1)
def renderer_digest() -> bytes:
    """The code a page's content comes from (the report, the templates, the probable
    original's ranking, distances, partitions) and mhc's version: a different mhc renders
    every page again."""
    from . import __version__

    here = Path(__file__).parent
    h = hashlib.blake2b(__version__.encode(), digest_size=16)
    sources = ["report.py", "figures.py", "chart.py", "pagedigest.py", "summary.py", "identity.py", "pairs.py",
               "metric.py", "sweep.py"]
    for p in [*(here / f for f in sources), *sorted((here / "templates").glob("*.j2"))]:
        h.update(p.read_bytes())
    return h.digest()


def file_digests(files: list[str], info: dict, thumbs: dict[str, str]) -> np.ndarray:
    """(n, 8) bytes per file: its path, facts shown under its picture (``info``: the
    ``file_info`` columns of summary.json), and thumbnail."""
    cols = [info.get(k) or [None] * len(files) for k in ("width", "height", "bytes", "format", "taken", "mtime",
                                                          "crop_of", "same_file_as")]
    out = np.empty((len(files), 8), dtype=np.uint8)
    for i, f in enumerate(files):
        facts = "\0".join(str(c[i]) for c in cols)
        out[i] = np.frombuffer(hashlib.blake2b(f"{f}\0{thumbs.get(f)}\0{facts}".encode("utf-8", "surrogateescape"),
                                               digest_size=8).digest(), dtype=np.uint8)
    return out


def page_digest(context: dict, members: list[list[int]], unclustered: list[int], files: np.ndarray,
                hexes: list[str], settings: dict) -> str:
    """One page: ``context`` (the page's template values other than pictures, JSON-able),
    its clusters' members in the order shown, its unclustered files, the file digests and
    the algorithm's hashes and settings."""
    h = hashlib.blake2b(renderer_digest(), digest_size=16)
    h.update(json.dumps([context, settings], sort_keys=True, default=str).encode("utf-8", "surrogateescape"))
    for m in members:
        h.update(b"|")
        h.update(files[m].tobytes())
        h.update("".join(hexes[i] for i in m).encode())
    h.update(b"#")
    h.update(files[unclustered].tobytes())
    return h.hexdigest()
