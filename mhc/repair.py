"""Is a folder that a rerun keeps still as mhc left it?

A rerun keeps the threshold folders whose contents did not change (:mod:`mhc.writing`).
But a user browsing the output may have deleted links in a viewer (thinking the duplicate
itself was gone), or whole cluster or threshold folders: kept as they were, those stayed
missing on every later run, while the summary and the report listed them.

Checking every link on each rerun would cost what writing them costs. Instead, after each
run's commit mhc stamps its marker file (:func:`stamp`; not after `mhc report`, which keeps
the folders without checking them); a folder whose entries changed since
then has a newer modification time, so one ``stat`` per folder finds them, and only those
are listed. A missing link or cluster folder is made again at the commit (journalled and
undoable like the rest); a missing threshold folder, or one of hard links or copies, is
written anew. Anything else in them (a viewer's ``.thumbnails``, the user's own files)
stays where it is.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .discover import MARKER
from .links import LinkSettings, layout
from .ownership import refuse
from .patching import link_text
from .sweep import Partition


@dataclass
class Repair:
    """What a kept threshold folder lacks: cluster folders to make, links to make (sub, file)."""

    folder: str
    dirs: list[str] = field(default_factory=list)
    links: list[tuple[str, int]] = field(default_factory=list)


def stamp(out: Path) -> None:
    """Mark the output as just written: folders changed after this are the user's doing."""
    try:
        os.utime(out / MARKER)
    except OSError:  # the next run then lists more folders than it needs: slower, not wrong
        pass


def written_at(out: Path) -> int:
    """When mhc last finished writing ``out`` (ns; 0 if unknown: every folder is listed)."""
    try:
        return os.stat(out / MARKER).st_mtime_ns
    except OSError:
        return 0


def _listed_if_changed(folder: str, since: int) -> dict[str, bool] | None:
    """``folder``'s entries (name -> is a symbolic link) if an entry was added, removed or
    renamed in it since ``since`` (the stamp), else None (one ``stat``). Timestamps are coarse
    (a clock tick of a few ms): a folder changed in the tick of the stamp is listed too, as it
    may have been changed after it. Raises FileNotFoundError for a folder that is gone."""
    if os.stat(folder).st_mtime_ns < since:
        return None
    with os.scandir(folder) as it:  # the kind of each entry comes with its name: no stat
        return {e.name: e.is_symlink() for e in it}


def check_kept(out: Path, key: str, name: str, p: Partition, files: list[str], links: list[str],
               settings: LinkSettings, since: int, found: list[str] | None = None) -> Repair | None | bool:
    """``None``: the folder ``out/key/name`` is as mhc left it. A :class:`Repair`: what to
    make again. ``False``: it must be written anew (gone, or not symbolic links). Refuses
    where a link's name holds something mhc did not make (``found``: see
    :func:`mhc.ownership.refuse`)."""
    base = os.path.join(out, key, name)
    if not os.path.isdir(base):
        return False
    fix = Repair(name)
    for sub, idx in layout(p, settings.unclustered):
        folder = os.path.join(base, sub)
        try:
            present = _listed_if_changed(folder, since)
        except FileNotFoundError:
            fix.dirs.append(sub)
            fix.links += [(sub, i) for i in idx.tolist()]
            continue
        if present is None:
            continue
        for i in idx.tolist():
            is_link = present.get(links[i])
            if is_link is None:
                fix.links.append((sub, i))
            elif settings.mode == "symlink" and not is_link:
                refuse(os.path.join(folder, links[i]), found)  # the user's own file under mhc's name
    if not fix.dirs and not fix.links:
        return None
    return fix if settings.mode == "symlink" else False  # a hard link or copy is made by writing anew


def restore_renamed(out: Path, key: str, patches: list, links: list[str], settings: LinkSettings,
                    since: int) -> None:
    """For folders patched in place (:mod:`mhc.patching`): the cluster folders only renamed
    keep what is in them, so links the user deleted there are added to the patch's links to make."""
    for patch, p in patches:
        members = dict(layout(p, settings.unclustered))
        added = set(patch.add)
        for a, b in patch.renames:
            try:
                present = _listed_if_changed(os.path.join(out, key, patch.old, a), since)
            except OSError:  # (checked a moment ago by check_patch: it is there)
                continue
            if present is None:
                continue
            have = members[b].tolist() if b in members else []
            patch.add += [(b, i) for i in have if links[i] not in present and (b, i) not in added]


def queue_repair(of, key: str, fix: Repair, files: list[str], links: list[str], relative: bool) -> None:
    """Queue ``fix`` for the commit, after the folder's move into the new tree."""
    base = of.staging / key / fix.folder
    for sub in fix.dirs:
        of.at_commit("mkdir", base / sub)
    for sub, i in fix.links:
        link = os.path.join(base, sub, links[i])
        # the text a link made in the live output holds: relative links are relative to it
        live = os.path.join(of.out, key, fix.folder, sub, links[i])
        of.at_commit("ln", link_text(files[i], live, relative), link)
