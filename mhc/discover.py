"""Finding the media files under a folder.

Recursive, sorted and deterministic. Files are classified by extension here and
confirmed by content when they are decoded (a text file named .jpg is reported then).
Folders made by mhc (they hold the ``.mhc-output`` marker or are its staging folders)
and the output folder itself are never scanned, even inside the input.
"""
from __future__ import annotations

import errno
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .errors import FileError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                              ".heic", ".heif", ".hif", ".avif"})
RAW_EXTENSIONS = frozenset({".cr2", ".nef", ".arw", ".dng", ".raf", ".orf", ".rw2"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".wmv", ".mpg", ".mpeg", ".3gp",
                              ".flv", ".ts"})
MARKER = ".mhc-output"
STAGING_INFIX = ".mhc-staging-"


@dataclass(frozen=True)
class MediaFile:
    """One file to hash: its path as found (absolute), kind and identity for the cache."""

    path: str
    kind: str  # "image" or "video"
    size: int
    mtime_ns: int


@dataclass
class Discovery:
    files: list[MediaFile] = field(default_factory=list)
    errors: list[FileError] = field(default_factory=list)
    ignored: int = 0  # files that are not media by extension


def classify(name: str) -> str | None:
    """``"image"`` or ``"video"`` for a media file name by extension (any case), else None.
    Animated GIFs are images. The content is confirmed when the file is decoded."""
    ext = os.path.splitext(name)[1].lower()
    if ext in IMAGE_EXTENSIONS or ext in RAW_EXTENSIONS:
        return "image"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    return None


def is_mhc_folder(path: str) -> bool:
    """True for folders mhc made: an output tree or a staging folder."""
    return STAGING_INFIX in os.path.basename(path) or os.path.exists(os.path.join(path, MARKER))


def discover(
    root: str | Path,
    *,
    exclude: list[str | Path] = (),  # type: ignore[assignment]
    follow_symlinks: bool = False,
) -> Discovery:
    """Walk ``root`` and return its media files in sorted path order.

    ``exclude``: folders never entered (the output). ``follow_symlinks``: also enter
    symlinked folders (each real folder is entered once, so loops end).
    Unreadable folders, dangling symlinks and vanished files become errors.
    """
    root_abs = os.path.abspath(os.fspath(root))
    excluded = {os.path.realpath(os.fspath(p)) for p in exclude}
    result = Discovery()
    seen_dirs: set[tuple[int, int]] = set()
    try:
        st = os.stat(root_abs)
        seen_dirs.add((st.st_dev, st.st_ino))
    except OSError:
        pass

    def walk(d: str) -> None:
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            result.errors.append(FileError(d, f"cannot list folder ({e.strerror or e})"))
            return
        for e in entries:
            path = e.path
            try:
                is_link = e.is_symlink()
                if e.is_dir(follow_symlinks=False):
                    if os.path.realpath(path) in excluded or is_mhc_folder(path):
                        continue
                    walk(path)
                    continue
                if is_link:
                    try:
                        st = os.stat(path)
                    except OSError as err:
                        if classify(e.name):
                            loop = err.errno == errno.ELOOP
                            result.errors.append(FileError(path, "symlink loop" if loop else "dangling symlink"))
                        else:
                            result.ignored += 1
                        continue
                    if stat.S_ISDIR(st.st_mode):
                        if not follow_symlinks:
                            continue
                        key = (st.st_dev, st.st_ino)
                        real = os.path.realpath(path)
                        if key in seen_dirs or real in excluded or is_mhc_folder(path):
                            continue
                        seen_dirs.add(key)
                        walk(path)
                        continue
                else:
                    st = e.stat(follow_symlinks=False)
                kind = classify(e.name)
                if kind is None or not stat.S_ISREG(st.st_mode):
                    result.ignored += 1
                    continue
                result.files.append(MediaFile(path, kind, st.st_size, st.st_mtime_ns))
            except OSError as err:
                if classify(e.name):
                    result.errors.append(FileError(path, f"cannot stat file ({err.strerror or err})"))

    if os.path.isdir(root_abs):
        walk(root_abs)
    result.files.sort(key=lambda f: f.path)
    result.errors.sort(key=lambda f: f.path)
    return result
