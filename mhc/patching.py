"""Changing a threshold folder of the previous output into this run's, in place.

One new file changes the name of every threshold folder (``thr_NNN_unclustered_U``: the
count is in it) and the content of its unclustered folder, while nearly everything else
stays. Writing each such folder again costs all its links (2 million at 100,000 files
and 20 thresholds); instead the old folder is moved into the new tree under its new name,
cluster folders whose members are unchanged are renamed (their rank may move), those that
changed little get the missing links added and the stale ones removed, and only new
clusters are written. :func:`plan_patch` works that out from the two partitions; the
changes are then made by :class:`~mhc.output.OutputFolder` in its journaled critical
section, each undoable, so an interrupted run leaves the old tree as it was.

Only symbolic links are patched (a copy or hard link removed could not be put back
cheaply); other link modes write changed folders anew.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .names import cluster_folder
from .sweep import Partition

PATCH_MIN = 64  # a changed cluster this large is patched rather than written anew
PARTS = ".mhc-parts-"  # beside a patched folder in the new tree: its new clusters, written first


@dataclass
class FolderPatch:
    """How the old threshold folder ``old`` becomes ``new``.

    ``renames``: old cluster folder -> new name (its content reused; names may be equal);
    ``trash``: old cluster folders that go; ``fresh``: new cluster folders written anew
    (name, member indices); ``add``: (cluster folder, file index) links to create;
    ``remove``: (cluster folder, link name, target path) links to remove, named in the
    folder's *new* name."""

    old: str
    new: str
    renames: list[tuple[str, str]] = field(default_factory=list)
    trash: list[str] = field(default_factory=list)
    fresh: list[tuple[str, np.ndarray]] = field(default_factory=list)
    add: list[tuple[str, int]] = field(default_factory=list)
    remove: list[tuple[str, str, str]] = field(default_factory=list)

    def cost(self) -> int:
        """Entries touched: what the patch costs, to compare with writing the folder anew."""
        moved = sum(1 for a, b in self.renames if a != b)
        return moved + len(self.trash) + sum(len(m) for _, m in self.fresh) + len(self.add) + len(self.remove)


def subfolders(p: Partition) -> list[tuple[str, np.ndarray]]:
    """The cluster folders of a threshold folder, as :func:`mhc.links.write_partition`
    names them: ``RANK_SIZE`` largest first, then ``unclustered_U``."""
    width = max(3, len(str(len(p.clusters))))
    out = [(cluster_folder(r, len(c), width), c) for r, c in enumerate(p.clusters, 1)]
    out.append((f"unclustered_{len(p.unclustered)}", p.unclustered))
    return out


def file_map(old_files: list[str], old_links: list[str], files: list[str], links: list[str]) -> np.ndarray:
    """For each file of the previous output, its index in this run, or -1 when it is gone
    or its link is named differently (then its old link goes and a new one is made)."""
    where = {f: i for i, f in enumerate(files)}
    out = np.full(len(old_files), -1, dtype=np.int64)
    for j, (f, name) in enumerate(zip(old_files, old_links)):
        i = where.get(f)
        if i is not None and links[i] == name:
            out[j] = i
    return out


def _key(members: np.ndarray) -> bytes:
    return np.sort(members).astype(np.int64).tobytes()


def plan_patch(old_name: str, new_name: str, old: Partition, new: Partition, n_files: int, mapping: np.ndarray,
               old_files: list[str], old_links: list[str], unclustered_links: bool) -> FolderPatch:
    """Work out how folder ``old_name`` (partition ``old``, in the previous run's file
    indices) becomes ``new_name`` (partition ``new`` of ``n_files`` files); ``mapping`` is
    :func:`file_map`."""
    patch = FolderPatch(old_name, new_name)
    olds = subfolders(old)
    news = subfolders(new)
    # which old cluster folder holds each file of this run (-1: none, or its link changed)
    label = np.full(n_files, -1, dtype=np.int64)
    exact: dict[bytes, int] = {}
    mapped = []
    for k, (_, members) in enumerate(olds):
        m = mapping[members]
        mapped.append(m)
        label[m[m >= 0]] = k
        if k < len(olds) - 1 and (m >= 0).all():
            exact[_key(m)] = k
    used = [False] * len(olds)

    def diff(k: int, sub: str, members: np.ndarray, links_wanted: bool) -> None:
        used[k] = True
        patch.renames.append((olds[k][0], sub))
        if not links_wanted:
            return
        m = mapped[k]
        have = m[m >= 0]
        for i in np.setdiff1d(members, have, assume_unique=True).tolist():
            patch.add.append((sub, i))
        stale = olds[k][1][(m < 0) | ~np.isin(m, members)]
        for j in stale.tolist():
            patch.remove.append((sub, old_links[j], old_files[j]))

    for sub, members in news[:-1]:
        k = exact.get(_key(members))
        if k is not None and not used[k]:
            used[k] = True
            patch.renames.append((olds[k][0], sub))
            continue
        k = int(label[members[0]])
        if len(members) >= PATCH_MIN and 0 <= k < len(olds) - 1 and not used[k]:
            m = mapped[k]
            # links to add, plus old links to remove (files gone, renamed or now elsewhere)
            change = len(np.setdiff1d(members, m[m >= 0])) + int((~np.isin(m, members)).sum())
            if change <= len(members) // 2:
                diff(k, sub, members, True)
                continue
        patch.fresh.append((sub, members))
    diff(len(olds) - 1, news[-1][0], news[-1][1], unclustered_links)  # unclustered: always patched
    patch.trash = [name for k, (name, _) in enumerate(olds) if not used[k]]
    return patch


def link_text(target: str, link: str, relative: bool) -> str:
    """What a symbolic link made by mhc holds (as :func:`mhc.links.make_link` makes it)."""
    return os.path.relpath(target, os.path.dirname(link)) if relative else target


def choose_patches(key: str, write: list[tuple[str, Partition]], delete: list[str], previous: dict,
                   files: list[str], links: list[str], settings) -> tuple[list[tuple[FolderPatch, Partition]], list]:
    """For the folders this run writes, the old folder of the same threshold to patch
    instead (when patching touches fewer entries than writing it anew), and the previous
    output's link names (to check what the patches remove)."""
    from .summary import partitions
    from .names import recorded_link_names

    old = previous["algorithms"][key]
    if settings.mode != "symlink" or (old.get("link", "symlink"), old.get("relative_links", False),
                                      old.get("unclustered_links", True)) != (
            "symlink", settings.relative, settings.unclustered):
        return [], []
    if old.get("method", "sweep") != "sweep" or "hashes" not in old:
        return [], []
    by_threshold = {t["threshold"]: t["folder"] for t in old.get("thresholds", [])
                    if t["folder"] in delete and t["folder"].startswith("thr_")}
    wanted = [(name, p) for name, p in write if p.threshold in by_threshold]
    if not wanted:
        return [], []
    old_files = previous["files"]
    old_links = recorded_link_names(old_files, old)
    mapping = file_map(old_files, old_links, files, links)
    old_parts = {p.threshold: p for p in partitions(previous, key)}
    out = []
    for name, p in wanted:
        op = old_parts.get(p.threshold)
        if op is None:
            continue
        patch = plan_patch(by_threshold[p.threshold], name, op, p, len(files), mapping, old_files, old_links,
                           settings.unclustered)
        anew = p.clustered_files + (len(p.unclustered) if settings.unclustered else 0)
        if patch.cost() < anew:
            out.append((patch, p))
    return out, old_links


def check_patch(out: Path, key: str, patch: FolderPatch, link_names: set[str], relative: bool,
                found: list[str] | None = None) -> bool:
    """Before ``patch`` is queued: False if the old folder is not as mhc left it (a cluster
    folder missing: then it is written anew); refuses (one line; with ``found``, collects:
    see :func:`mhc.ownership.refuse`) where the patch would remove or set aside something
    mhc did not make. Folders that are only renamed keep whatever is in them."""
    from .ownership import CLUSTER_FOLDER, check_links, refuse

    old = out / key / patch.old
    try:
        entries = {e.name: e for e in os.scandir(old)}
    except OSError:
        return False
    for e in entries.values():
        if not (e.is_dir(follow_symlinks=False) and CLUSTER_FOLDER.match(e.name)):
            refuse(e.path, found)
    if any(a not in entries for a, _ in patch.renames) or any(s not in entries for s in patch.trash):
        return False
    for sub in patch.trash:
        check_links(str(old / sub), link_names, False, found)
    was = {b: a for a, b in patch.renames}
    for sub, name, target in patch.remove:
        link = os.path.join(old, was[sub], name)
        try:
            held = os.readlink(link)
        except FileNotFoundError:
            return False
        except OSError:
            refuse(link, found)
            continue
        if held != link_text(target, os.path.join(out, key, patch.new, sub, name), relative):
            refuse(link, found)
    return True


def checked_patches(of, key: str, patches: list, link_names: set[str], relative: bool) -> tuple[list, list]:
    """``patches`` (pairs of :class:`FolderPatch` and partition) split into those whose old
    folder is as mhc left it and those to write anew; the old folders of the latter are
    checked for deletion by ``of`` (an :class:`~mhc.output.OutputFolder`)."""
    ok, anew = [], []
    for patch, part in patches:
        (ok if check_patch(of.out, key, patch, link_names, relative, of.not_made) else anew).append((patch, part))
    for patch, _ in anew:
        of.check_deleting(f"{key}/{patch.old}", link_names, False)
    return ok, anew


def queue_patch(of, base: Path, patch: FolderPatch, files: list[str], links: list[str], relative: bool) -> None:
    """The changes that make the old folder ``patch.old`` this run's ``patch.new`` (see
    this module), queued for the commit's critical section in an order each of
    them can be undone in: move the folder in, set dropped clusters aside in the old tree,
    rename through temporary names (ranks may swap), move new clusters in, fix links."""
    old, new = of.out / base.name / patch.old, base / patch.new
    of.at_commit("mv", old, new)
    if patch.trash:
        of.at_commit("mkdir", old)  # in the old tree: removed with it
        for sub in patch.trash:
            of.at_commit("mv", new / sub, old / sub)
    moved = [(a, b) for a, b in patch.renames if a != b]
    for a, _ in moved:
        of.at_commit("mv", new / a, new / f".mhc-tmp-{a}")
    for a, b in moved:
        of.at_commit("mv", new / f".mhc-tmp-{a}", new / b)
    if patch.fresh:
        parts = base / (PARTS + patch.new)
        for sub, _ in patch.fresh:
            of.at_commit("mv", parts / sub, new / sub)
        of.at_commit("rmdir", parts)
    for sub, name, target in patch.remove:
        link = os.path.join(new, sub, name)
        of.at_commit("rm", link_text(target, link, relative), link)
    for sub, i in patch.add:
        link = os.path.join(new, sub, links[i])
        of.at_commit("ln", link_text(files[i], link, relative), link)
