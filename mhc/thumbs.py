"""Thumbnails for the report: made once per file, kept under ``<out>/.mhc/thumbs``.

A thumbnail is named by the file's identity (path, size, mtime), so it is reused by every
later run (hard-linked into the new tree) until the file changes.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path

from PIL import Image

from .decode import DecodeError, DecodeSettings, open_image
from .hashing import MIN_FILES_FOR_POOL, local_executor
from .video import VideoSettings, sample_frames

THUMB_SIDE = 200
THUMB_DIR = Path(".mhc") / "thumbs"


def thumb_name(path: str) -> str | None:
    """File name of ``path``'s thumbnail, from its identity; None if the file is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = os.fsencode(path) + f"|{st.st_size}|{st.st_mtime_ns}".encode()
    return hashlib.sha1(key).hexdigest()[:20] + ".jpg"


def make_thumb(path: str, dest: str, kind: str = "image") -> bool:
    """Write a small JPEG of ``path`` (as a viewer shows it; a video's middle frame) to
    ``dest``; False if unreadable."""
    try:
        if kind == "video":
            im = sample_frames(path, VideoSettings(frames=1, min_side=THUMB_SIDE), color=True).frames[0]
        else:
            im = open_image(path, DecodeSettings(min_side=THUMB_SIDE, color=True))
    except (DecodeError, IndexError):
        return False
    im.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.LANCZOS)
    tmp = dest + ".tmp"
    im.convert("RGB").save(tmp, "JPEG", quality=80)
    os.replace(tmp, dest)
    return True


def _make_batch(jobs: list[tuple[str, str, str]]) -> list[bool]:
    return [make_thumb(p, d, k) for p, d, k in jobs]


def ensure_thumbs(
    files: list[str],
    out: Path,
    previous: Path | None = None,
    *,
    kinds: list[str] | None = None,
    workers: int = 0,
    executor: Executor | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, str]:
    """Thumbnails for ``files`` under ``out/.mhc/thumbs``: hard-linked from ``previous``
    (an older output) when there, made otherwise (on ``executor``, or a local pool of
    ``workers`` when there are many). Returns path -> path relative to ``out``."""
    tdir = out / THUMB_DIR
    tdir.mkdir(parents=True, exist_ok=True)
    found: dict[str, str] = {}
    todo: list[tuple[str, str, str]] = []
    for p, kind in zip(files, kinds or ["image"] * len(files)):
        name = thumb_name(p)
        if name is None:
            continue
        dest = tdir / name
        if not dest.exists() and previous is not None:
            old = previous / THUMB_DIR / name
            try:
                os.link(old, dest)
            except OSError:
                pass
        if dest.exists():
            found[p] = str(THUMB_DIR / name)
        else:
            todo.append((p, str(dest), kind))
    batches = [todo[i:i + 16] for i in range(0, len(todo), 16)]
    own = None
    if executor is None and len(todo) >= MIN_FILES_FOR_POOL and (workers or os.cpu_count() or 1) > 1:
        # a pool only when there is enough to make: most reruns find every thumbnail
        executor = own = local_executor(workers or os.cpu_count() or 1)
    try:
        return _collect(batches, executor, out, found, len(todo), progress)
    finally:
        if own is not None:
            own.shutdown(wait=True)


def _collect(batches, executor, out: Path, found: dict[str, str], total: int, progress) -> dict[str, str]:
    results = executor.map(_make_batch, batches) if executor is not None else map(_make_batch, batches)
    done = 0
    for batch, oks in zip(batches, results):
        for (p, dest, _), ok in zip(batch, oks):
            if ok:
                found[p] = os.path.relpath(dest, out)
        done += len(batch)
        if progress:
            progress("thumbnails", done, total)
    return found
