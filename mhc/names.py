"""Names in the output tree: threshold, cluster and link names."""
from __future__ import annotations

import os
import unicodedata

_NAME_MAX = 255


def threshold_folder(threshold: int, unclustered: int, width: int = 3) -> str:
    return f"thr_{threshold:0{width}d}_unclustered_{unclustered}"


def cluster_folder(rank: int, size: int, width: int = 3) -> str:
    return f"{rank:0{width}d}_{size}"


# Four namings, recorded per algorithm folder in summary.json ("link_names"; absent: 1):
# 1 keeps the original stem and extension but for separators and control characters (newlines
#   break viewers and scripts): the output contract, for symlink and hard-link trees, which
#   only a filesystem that holds links carries (checked before hashing);
# 2 also replaces what FAT, exFAT and Windows refuse in a name (: * ? " < > | and bytes that
#   are not UTF-8), for --link copy, whose tree may be written to such a drive (a USB stick).
# 3 and 4 are 1 and 2 with names kept apart also when they differ only in Unicode
#   normalization (a Mac's "café" with a combining accent and another system's precomposed
#   one), as macOS's APFS and HFS+ do: there, identical copies of one picture under those two
#   names got link names that are one name (the second could not be made). The names differ
#   from 1 and 2 only for such files.
# A rerun knows an older output's links by the naming it records. str.translate with a
# table: 10x faster than a per-character generator over 100,000 names.
_CLEAN = {1: {c: "_" for c in [*range(32), 127, ord("/"), ord("\\")]},
          2: {c: "_" for c in [*range(32), 127, *map(ord, '/\\"*:<>?|'), *range(0xDC80, 0xDD00)]}}


def naming_for(link: str) -> int:
    """The naming of a tree made with ``--link link`` (see _CLEAN)."""
    return 4 if link == "copy" else 3


def _drive_safe(naming: int) -> bool:
    return naming in (2, 4)


HASH_DIGITS = 16  # hex digits of the hash in a link name; the full hash is in summary.json


def link_name(path: str, hexhash: str, suffix: str = "", naming: int = 1) -> str:
    """``<stem>_<hash>[suffix]<ext>``: at most 255 bytes, no separators, whatever the hash
    length (the first 16 hex digits of the hash are enough to tell files apart by eye);
    with ``naming`` 2, UTF-8 and nothing a FAT, exFAT or Windows drive refuses (see _CLEAN)."""
    base = os.path.basename(path)
    dot = base.rfind(".")
    stem, ext = (base[:dot], base[dot:]) if dot > 0 else (base, "")
    table = _CLEAN[2 if _drive_safe(naming) else 1]
    stem, ext = stem.translate(table), ext.translate(table)
    tail = f"_{hexhash[:HASH_DIGITS]}{suffix}{ext}"
    if stem.isascii() and tail.isascii() and len(stem) + len(tail) <= _NAME_MAX and len(ext) <= 16:
        return stem + tail  # the common case, without encoding (a third of a warm rerun's naming)
    if len(os.fsencode(ext)) > 16:
        stem, ext = stem + ext, ""
        tail = f"_{hexhash[:HASH_DIGITS]}{suffix}{ext}"
    budget = _NAME_MAX - len(os.fsencode(tail))
    raw = os.fsencode(stem)
    if len(raw) > budget:
        # cut whole characters: the bytes of a multi-byte character stay together
        stem = raw[:max(0, budget)].decode("utf-8", "ignore") if _drive_safe(naming) or _utf8(raw) \
            else os.fsdecode(raw[:max(0, budget)])
    return stem + tail


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def recorded_link_names(files: list[str], entry: dict) -> list[str]:
    """The names of the links an output's algorithm folder holds, as its ``summary.json``
    ``entry`` records them (an output of an older mhc, named the older way, included)."""
    return unique_link_names(files, entry.get("hashes", []), entry.get("link_names", 1))


def unique_link_names(paths: list[str], hexes: list[str], naming: int = 1) -> list[str]:
    """Link names for files, unique among themselves (case-insensitively and, from naming 3,
    whatever their Unicode normalization, so the tree also copies to filesystems that
    ignore those). Deterministic for the same input order.

    Thousands of identical files with the same name are numbered ``_2``, ``_3``, ... in
    linear time (the next free number per name is remembered)."""
    names: list[str] = []
    taken: set[str] = set()
    next_k: dict[str, int] = {}
    key = _caseless if naming >= 3 else str.casefold
    for path, hx in zip(paths, hexes):
        name = link_name(path, hx, naming=naming)
        base = key(name)
        if base in taken:
            k = next_k.get(base, 1)
            while key(name) in taken:
                k += 1
                name = link_name(path, hx, f"_{k}", naming)
            next_k[base] = k
        taken.add(key(name))
        names.append(name)
    return names


def _caseless(name: str) -> str:
    """Unicode's canonical caseless match (NFD(casefold(NFD(x)))): names equal under it are
    one name on a case- and normalization-insensitive filesystem."""
    if name.isascii():  # nearly every name: as fast as before
        return name.casefold()
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", name).casefold())
