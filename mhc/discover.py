"""Finding the media files under a folder.

Recursive, sorted and deterministic. Files are classified by extension here and
confirmed by content when they are decoded (a text file named .jpg is reported then).
Folders made by mhc (they hold the ``.mhc-output`` marker or are its staging folders)
and the output folder itself are never scanned, even inside the input.
"""
from __future__ import annotations

import errno
import itertools
import logging
import os
import stat
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

from .errors import FileError, UsageError
from .identity import special_kind

log = logging.getLogger(__name__)

# .jfif and .jpe: JPEGs as Windows and browsers save them; .apng: animated PNG (first frame);
# .mpo: 3D cameras' JPEGs (the first eye); .jp2 .j2k .jpf .jpx: JPEG 2000 (scans, archives);
# .tga .pcx .pbm .pgm .ppm .pnm .qoi .ico: what Pillow reads of older and simpler formats.
# Not .psd: a Photoshop file holds a flattened picture only if saved "maximize compatibility",
# and without one every file would look the same (blank). Not .jxl: Pillow cannot read it.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jfif", ".jpe", ".png", ".apng", ".bmp", ".gif", ".tif", ".tiff",
                              ".webp", ".heic", ".heif", ".hif", ".avif", ".mpo", ".jp2", ".j2k", ".jpf", ".jpx",
                              ".tga", ".pcx", ".pbm", ".pgm", ".ppm", ".pnm", ".qoi", ".ico"})
RAW_EXTENSIONS = frozenset({".cr2", ".nef", ".arw", ".dng", ".raf", ".orf", ".rw2"})
# .mts/.m2ts: camcorders (AVCHD); .vob: DVDs; the rest as FFmpeg reads them
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".wmv", ".mpg", ".mpeg", ".3gp",
                              ".3g2", ".flv", ".f4v", ".ts", ".mts", ".m2ts", ".vob", ".ogv", ".asf", ".mxf"})
MARKER = ".mhc-output"
STAGING_INFIX = ".mhc-staging-"


Kind = Literal["image", "video"]


@dataclass(frozen=True)
class MediaFile:
    """One file to hash: its path as found (absolute), kind, and identity for the cache
    (size and mtime change with most edits; device, inode and ctime catch the rest: a file
    copied over with ``touch -r``, or two same-size files swapped by renames)."""

    path: str
    kind: Kind
    size: int
    mtime_ns: int
    dev: int = 0
    ino: int = 0
    ctime_ns: int = 0

    @classmethod
    def from_stat(cls, path: str, kind: Kind, st: os.stat_result) -> "MediaFile":
        return cls(path, kind, st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino, st.st_ctime_ns)


@dataclass
class Discovery:
    files: list[MediaFile] = field(default_factory=list)
    errors: list[FileError] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # files not media by their extension, per extension
    excluded: Counter = field(default_factory=Counter)  # --exclude pattern -> files and folders it left out
    # a symlink to a file also found by another path -> that path (the file is listed once)
    aliases: dict[str, str] = field(default_factory=dict)


def most_skipped(skipped: dict[str, int], shown: int = 6) -> tuple[str, int]:
    """The ``shown`` extensions with the most skipped files, as "3 .json, 1 without an
    extension", and how many files the others hold."""
    top = sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0]))
    return (", ".join(f"{n} {ext or 'without an extension'}" for ext, n in top[:shown]),
            sum(n for _, n in top[shown:]))


def extension(name: str) -> str:
    """The extension with its dot, lower case; unlike os.path.splitext, names that begin
    with dots keep theirs (``..jpg`` and ``.jpg`` are JPEGs)."""
    _, dot, ext = name.rpartition(".")
    return "." + ext.lower() if dot else ""


def classify(name: str) -> Kind | None:
    """``"image"`` or ``"video"`` for a media file name by extension (any case), else None.
    Animated GIFs are images. The content is confirmed when the file is decoded."""
    ext = extension(name)
    if ext in IMAGE_EXTENSIONS or ext in RAW_EXTENSIONS:
        return "image"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    return None


def enclosing_output(path: Path) -> Path | None:
    """The mhc output folder ``path`` is or lies in (the nearest folder with mhc's marker),
    else None."""
    for folder in (path, *path.parents):
        if (folder / MARKER).is_file():
            return folder
    return None


def is_mhc_folder(path: str) -> bool:
    """True for folders mhc made: an output tree or a staging folder."""
    return STAGING_INFIX in os.path.basename(path) or os.path.exists(os.path.join(path, MARKER))


def matcher(patterns: Sequence[str], root: str) -> Callable[[str, str], str | None] | None:
    """``(name, path) -> the pattern that matches, or None`` for the user's ``--exclude``
    globs (None: no pattern). A
    pattern without a slash is matched against each file's and folder's name (``@eaDir``,
    ``*.tmp.jpg``), one with a slash against the path under ``root`` (``phone/cache/*``,
    ``./phone/cache``), one that starts with a slash against the whole path. Case-sensitive,
    as Linux's names."""
    if not patterns:
        return None
    rules = []  # (the pattern as given, what it is matched against, the glob)
    for p in patterns:
        if p.startswith("/"):
            rules.append((p, "whole", p.rstrip("/")))
        elif "/" in p:
            glob = p[2:] if p.startswith("./") else p
            rules.append((p, "under", glob.strip("/")))
        else:
            rules.append((p, "name", p))
    start = len(os.path.join(root, ""))

    def match(name: str, path: str) -> str | None:
        for given, kind, glob in rules:
            if fnmatchcase(name if kind == "name" else path if kind == "whole" else path[start:], glob):
                return given
        return None
    return match


def discover(
    root: str | Path,
    *,
    exclude: list[str | Path] = (),  # type: ignore[assignment]
    follow_symlinks: bool = False,
    skip: Sequence[str] = (),
) -> Discovery:
    """Walk ``root`` and return its media files in sorted path order.

    ``exclude``: folders never entered (the output). ``follow_symlinks``: also enter
    symlinked folders (each real folder is entered once, so loops end). ``skip``: the
    user's glob patterns (see :func:`matcher`); a matching folder is not entered, and
    ``excluded`` counts what each pattern left out.
    Each file is listed once: a symlink to a file also found by its own path (or by an
    earlier link) is left out, and ``aliases`` maps it to that path. Otherwise a link and
    its target came out as a cluster of two "copies", and the report could mark the link
    as the one to keep: deleting the other, the real file, would break the link and lose
    the picture. Hard links stay apart (each is a name of its own; removing one loses
    nothing); the collection marks them as one file (``same_file_as``).
    Unreadable folders, dangling symlinks and vanished files become errors; a ``root``
    that is not a folder raises :class:`~mhc.errors.UsageError`.
    """
    root_abs = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root_abs):  # not an empty result: a mistyped folder would look like one without media
        why = "does not exist" if not os.path.lexists(root_abs) else "is not a folder"
        raise UsageError(f"discover: {os.fspath(root)} {why}; pass the folder of your media")
    excluded = {os.path.realpath(os.fspath(p)) for p in exclude}
    skipped = matcher(skip, root_abs)
    result = Discovery()
    seen_dirs: set[tuple[int, int]] = set()
    linked_dirs: list[str] = []  # symlinked folders, entered after every real one
    linked_files: list[MediaFile] = []  # symlinks to media files, listed unless their file is found otherwise

    def walk(d: str) -> None:
        try:
            st = os.stat(d)
            if (st.st_dev, st.st_ino) in seen_dirs:
                # reached again by a real folder: under a followed link to an ancestor of the
                # input (in/up -> ..), or a bind mount; every file would come out twice
                return
            seen_dirs.add((st.st_dev, st.st_ino))
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            result.errors.append(FileError(d, f"cannot list folder ({e.strerror or e})"))
            return
        for e in entries:
            path = e.path
            pattern = skipped(e.name, path) if skipped is not None else None
            if pattern is not None:
                result.excluded[pattern] += 1
                continue
            kind = classify(e.name)
            try:
                if e.is_dir(follow_symlinks=False):
                    if os.path.realpath(path) not in excluded and not is_mhc_folder(path):
                        walk(path)
                    continue
                into = result.files
                if e.is_symlink():
                    into = linked_files
                    try:
                        st = os.stat(path)
                    except OSError as err:
                        if kind:
                            loop = err.errno == errno.ELOOP
                            result.errors.append(FileError(path, "symlink loop" if loop else "dangling symlink"))
                        else:
                            result.skipped[extension(e.name)] += 1
                        continue
                    if stat.S_ISDIR(st.st_mode):
                        if follow_symlinks:
                            linked_dirs.append(path)
                        continue
                else:
                    st = e.stat(follow_symlinks=False)
                if kind is None:
                    result.skipped[extension(e.name)] += 1
                elif not stat.S_ISREG(st.st_mode):
                    result.errors.append(FileError(path, f"not a regular file ({special_kind(st.st_mode)})"))
                else:
                    into.append(MediaFile.from_stat(path, kind, st))
            except OSError as err:
                if kind:
                    result.errors.append(FileError(path, f"cannot stat file ({err.strerror or err})"))

    walk(root_abs)
    # Symlinked folders last, each real folder once: a link to a folder that is also
    # scanned directly (in/link -> in/real) adds nothing, and loops end.
    while linked_dirs:
        path = linked_dirs.pop(0)
        if not os.path.isdir(path) or os.path.realpath(path) in excluded or is_mhc_folder(path):
            continue
        walk(path)  # (which skips a real folder entered already)
    if linked_files:
        _list_links_once(result, linked_files)
    result.files.sort(key=lambda f: f.path)
    result.errors.sort(key=lambda f: f.path)
    return result


def disk_tops(root: Path, files: Sequence[MediaFile]) -> dict[str, tuple[int, int]]:
    """For each filesystem ``files`` lie on, its highest folder from ``root`` down (the
    input itself, or a disk mounted inside it), with its (device, inode). See :func:`gone_disks`."""
    from .identity import inodes_made_up

    tops: dict[str, tuple[int, int]] = {}
    devices: set[int] = set()
    for f in files:
        if f.dev in devices:
            continue
        devices.add(f.dev)
        try:
            parts = Path(os.path.relpath(os.path.dirname(f.path), root)).parts
        except ValueError:
            continue
        if parts[:1] == ("..",):  # (not found under the input: nothing of the input's to watch)
            continue
        for folder in itertools.accumulate(parts, os.path.join, initial=str(root)):  # from the root down
            try:
                st = os.stat(folder)
            except OSError:
                break
            if st.st_dev == f.dev:
                # (inode 0: FAT, exFAT and FUSE number folders anew when they forget them)
                tops[folder] = (st.st_dev, 0 if inodes_made_up(folder) else st.st_ino)
                break
    return tops


def gone_disks(tops: dict[str, tuple[int, int]]) -> dict[str, str]:
    """The folders of :func:`disk_tops` that are no longer there, are another folder, or do
    not answer, each with what happened to it: the disk under them was unmounted (unplugged,
    a network share dropped), the folder moved or replaced, or the filesystem stopped
    answering (a FUSE driver killed, a stale network mount). Files that "disappeared" or could
    not be read there did not disappear and are not broken."""
    gone = {}
    for folder, ident in tops.items():
        try:
            st = os.stat(folder)
            with os.scandir(folder) as entries:  # (a mount whose server is away may still stat)
                next(entries, None)
        except (FileNotFoundError, NotADirectoryError):
            gone[folder] = "was unmounted, moved or replaced"
        except PermissionError:  # (its permissions changed: the files say so themselves)
            continue
        except OSError as e:
            gone[folder] = f"reported read errors ({e.strerror}; see dmesg)" if e.errno == errno.EIO else \
                f"stopped answering ({e.strerror or e})"
        else:
            if st.st_dev != ident[0] or ident[1] and st.st_ino != ident[1]:
                gone[folder] = "was unmounted, moved or replaced"
    return gone


def _list_links_once(result: Discovery, links: list[MediaFile]) -> None:
    """Add to ``result.files`` each symlinked file not found by another path; record the
    others in ``result.aliases``, mapped to the link's own target where that was found
    (else to the first name of the same file: a hard link of it, or an earlier link)."""
    listed = {f.path for f in result.files}
    found: dict[tuple[int, int], str] = {}
    for f in sorted(result.files, key=lambda f: f.path):
        found.setdefault((f.dev, f.ino), f.path)
    for f in sorted(links, key=lambda f: f.path):
        # inode 0: a file system without inode numbers, where (dev, ino) names no file
        first = found.setdefault((f.dev, f.ino), f.path) if f.ino else f.path
        if first == f.path:
            result.files.append(f)
        else:
            real = os.path.realpath(f.path)
            result.aliases[f.path] = real if real in listed else first
