"""Names in the output tree: threshold, cluster and link names."""
from __future__ import annotations

import os

_NAME_MAX = 255


def threshold_folder(threshold: int, unclustered: int, width: int = 3) -> str:
    return f"thr_{threshold:0{width}d}_unclustered_{unclustered}"


def cluster_folder(rank: int, size: int, width: int = 3) -> str:
    return f"{rank:0{width}d}_{size}"


# Two namings, recorded per algorithm folder in summary.json ("link_names"; absent: 1):
# 1 keeps the original stem and extension but for separators and control characters (newlines
#   break viewers and scripts): the output contract, for symlink and hard-link trees, which
#   only a filesystem that holds links carries (checked before hashing);
# 2 also replaces what FAT, exFAT and Windows refuse in a name (: * ? " < > | and bytes that
#   are not UTF-8), for --link copy, whose tree may be written to such a drive (a USB stick).
# A rerun knows an older output's links by the naming it records. str.translate with a
# table: 10x faster than a per-character generator over 100,000 names.
_CLEAN = {1: {c: "_" for c in [*range(32), 127, ord("/"), ord("\\")]},
          2: {c: "_" for c in [*range(32), 127, *map(ord, '/\\"*:<>?|'), *range(0xDC80, 0xDD00)]}}


def naming_for(link: str) -> int:
    """The naming of a tree made with ``--link link`` (see _CLEAN)."""
    return 2 if link == "copy" else 1


HASH_DIGITS = 16  # hex digits of the hash in a link name; the full hash is in summary.json


def link_name(path: str, hexhash: str, suffix: str = "", naming: int = 1) -> str:
    """``<stem>_<hash>[suffix]<ext>``: at most 255 bytes, no separators, whatever the hash
    length (the first 16 hex digits of the hash are enough to tell files apart by eye);
    with ``naming`` 2, UTF-8 and nothing a FAT, exFAT or Windows drive refuses (see _CLEAN)."""
    base = os.path.basename(path)
    dot = base.rfind(".")
    stem, ext = (base[:dot], base[dot:]) if dot > 0 else (base, "")
    table = _CLEAN[2 if naming >= 2 else 1]
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
        stem = raw[:max(0, budget)].decode("utf-8", "ignore") if naming >= 2 or _utf8(raw) \
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
    """Link names for files, unique among themselves (case-insensitively, so the tree
    also copies to case-insensitive filesystems). Deterministic for the same input order.

    Thousands of identical files with the same name are numbered ``_2``, ``_3``, ... in
    linear time (the next free number per name is remembered)."""
    names: list[str] = []
    taken: set[str] = set()
    next_k: dict[str, int] = {}
    for path, hx in zip(paths, hexes):
        name = link_name(path, hx, naming=naming)
        base = name.casefold()
        if base in taken:
            k = next_k.get(base, 1)
            while name.casefold() in taken:
                k += 1
                name = link_name(path, hx, f"_{k}", naming)
            next_k[base] = k
        taken.add(name.casefold())
        names.append(name)
    return names
