"""Progress as typed events: the library reports, the CLI draws (no string matching)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Stage = Literal["scan", "hash", "thumbnails", "pairs", "write", "report", "hydrus"]


@dataclass(frozen=True)
class ProgressEvent:
    """``done`` of ``total`` units of ``stage`` are finished. ``detail`` names what the
    stage works on when there are several (the algorithm of a pair search)."""

    stage: Stage
    done: int
    total: int
    detail: str = ""


Progress = Callable[[ProgressEvent], None]
"""A callback taking :class:`ProgressEvent`; the CLI draws progress bars with it."""


def report(progress: Progress | None, stage: Stage, done: int, total: int, detail: str = "") -> None:
    """Send one event if anyone listens."""
    if progress is not None:
        progress(ProgressEvent(stage, done, total, detail))
