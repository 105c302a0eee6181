"""Writing the tree: one folder of links per cluster, per threshold, per algorithm.

Each threshold folder gets a digest of what it holds (its clusters, link names, targets
and link settings), recorded in ``summary.json``. On a rerun a folder whose digest is
unchanged is moved from the previous output instead of being written again, so a rerun
costs what changed, not what the output already holds. The links themselves are made
by :mod:`mhc.links`.
"""
from __future__ import annotations

import csv
import hashlib
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import forked
from .errors import FileError, UsageError, fault
from .events import Progress, report
from .links import LinkSettings, LinkWriter, write_partition
from .output import OutputFolder
from .ownership import copies_as_made, keeps_times
from .patching import PARTS, checked_patches, choose_patches, queue_patch
from .room import check_room_for_copies
from .repair import Repair, check_kept, queue_repair, restore_renamed, stamp, written_at
from .sweep import Partition
from .thumbmarks import THUMB_DIR, thumbs_written

log = logging.getLogger(__name__)

FORK_MIN_LINKS, FORK_MAX_LINKS, FORK_MAX_FILES = 2_000, 200_000, 20_000  # links made in a forked child (mhc.forked)


def folder_digest(files_digest: bytes, p: Partition, settings: LinkSettings) -> str:
    """What a threshold folder holds, in 16 hex digits: same digest, same folder."""
    h = hashlib.blake2b(files_digest + settings.tag(), digest_size=8)
    for c in p.clusters:
        h.update(np.asarray(c, dtype=np.int64).tobytes())
        h.update(b"|")
    return h.hexdigest()


def files_digest(files: list[str], links: list[str], facts: tuple[list[int], list[int]] | None = None) -> bytes:
    """The files and their link names: part of every folder's digest. ``facts``: each file's
    size and mtime, for a tree of copies or hard links, whose folders hold the files' bytes
    (a file changed with the same hash would leave its old copies in the kept folders)."""
    # the same bytes as fsencode(f) + NUL + fsencode(name) + NUL per file, encoded at once
    text = "".join(f"{f}\0{name}\0" for f, name in zip(files, links))
    if facts is not None:
        text += "".join(f"{b}\0{m}\0" for b, m in zip(*facts))
    return hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=16).digest()


@dataclass
class FolderPlan:
    """For one algorithm: which threshold folders to write and which to keep."""

    key: str
    write: list[tuple[str, Partition]]  # (folder name, partition)
    keep: list[str]  # folder names moved from the previous output
    delete: list[str]  # folder names of the previous output that go
    patches: list = field(default_factory=list)  # (FolderPatch, Partition): old folders changed in place
    old_links: list[str] = field(default_factory=list)  # the previous output's link names, when patching

    @property
    def unchanged(self) -> bool:
        return not self.write and not self.delete and not self.patches


def plan_folders(key: str, entries: list[dict], partitions: list[Partition], previous: dict | None,
                 settings: LinkSettings) -> FolderPlan:
    """Compare this run's folders (``entries`` of summary.json, with digests) with the
    previous output's entry for the same algorithm."""
    old = {t["folder"]: t.get("digest") for t in (previous or {}).get("thresholds", []) if t.get("written", True)}
    write, keep = [], []
    for t, p in zip(entries, partitions):
        if not t["written"]:
            continue
        if old.get(t["folder"]) == t["digest"] and t["digest"] is not None:
            keep.append(t["folder"])
        else:
            write.append((t["folder"], p))
    delete = [f for f in old if f not in keep]
    return FolderPlan(key, write, keep, delete)


def with_patches(plan: FolderPlan, previous: dict | None, files: list[str], links: list[str],
                 settings: LinkSettings) -> FolderPlan:
    """Folders to write that are cheaper to make from the old folder of their threshold
    (see :mod:`mhc.patching`): those leave ``write`` and ``delete`` for ``patches``."""
    if previous is None or plan.key not in previous.get("algorithms", {}) or not plan.write or not plan.delete:
        return plan
    patches, old_links = choose_patches(plan.key, plan.write, plan.delete, previous, files, links, settings)
    if not patches:
        return plan
    new = {pt.new for pt, _ in patches}
    old = {pt.old for pt, _ in patches}
    return FolderPlan(plan.key, [(n, p) for n, p in plan.write if n not in new], plan.keep,
                      [d for d in plan.delete if d not in old], patches, old_links)


def plan_writes(of: OutputFolder, staging: Path, plans: list[FolderPlan], files: list[str],
                links: dict[str, list[str]], settings: dict[str, LinkSettings],
                previous: dict | None) -> list[FolderPlan]:
    """For every algorithm (see :class:`FolderPlan`), all but making its folders: check
    what goes, keep what stays, queue the patches for the commit. Returns the plans whose
    folders :func:`make_folders` must make."""
    prev_algos = (previous or {}).get("algorithms", {})
    todo = []
    for plan in plans:
        old = prev_algos.get(plan.key)
        if old is not None and plan.delete:
            listed = plan.old_links or old.get("links") or _old_links(previous, old)
            names, made = set(listed), _as_made(of, previous, old, listed)
            for name in plan.delete:
                of.check_deleting(f"{plan.key}/{name}", names, made is not None, made)
        if old is not None and plan.unchanged:
            of.keep(plan.key)  # the whole algorithm folder, one rename
            continue
        if plan.patches:
            plan = _checked(of, plan, links[plan.key], settings[plan.key])
        todo.append(plan)
        for name in plan.keep:
            of.keep(f"{plan.key}/{name}")
        for patch, _ in plan.patches:
            queue_patch(of, staging / plan.key, patch, files, links[plan.key], settings[plan.key].relative)
    return todo


def make_folders(staging: Path, plans: list[FolderPlan], files: list[str], links: dict[str, list[str]],
                 settings: dict[str, LinkSettings], progress: Progress | None = None) -> None:
    """The threshold folders of ``plans`` (from :func:`plan_writes`) and their links, in
    ``staging``; the new clusters of a patched folder beside it."""
    total = sum(len(p.write) + len(p.patches) for p in plans)
    done = 0
    for plan in plans:
        base = staging / plan.key
        try:
            base.mkdir()
            with LinkWriter(settings[plan.key]) as writer:
                for name, p in plan.write:
                    write_partition(base / name, p, files, links[plan.key], writer)
                    done += 1
                    report(progress, "write", done, total)
                for patch, _ in plan.patches:  # their new clusters, beside the folder they go into
                    done += 1
                    report(progress, "write", done, total)
                    parts = base / (PARTS + patch.new)
                    if patch.fresh:
                        parts.mkdir()
                    for sub, members in patch.fresh:
                        ds = os.path.join(parts, sub)
                        idx = members.tolist()
                        writer.add([files[i] for i in idx], [os.path.join(ds, links[plan.key][i]) for i in idx], ds)
        except OSError as e:
            raise fault(e, f"cannot write the output ({e.filename2 or e.filename or staging})") from None


def _checked(of: OutputFolder, plan: FolderPlan, links: list[str], settings: LinkSettings) -> FolderPlan:
    """``plan`` without the patches whose old folder is not as mhc left it (written anew);
    the links a user deleted in what is patched are made again."""
    ok, anew = checked_patches(of, plan.key, plan.patches, set(plan.old_links), settings.relative)
    restore_renamed(of.out, plan.key, ok, links, settings, written_at(of.out))
    return FolderPlan(plan.key, plan.write + [(pt.new, p) for pt, p in anew], plan.keep,
                      plan.delete + [pt.old for pt, _ in anew], ok, plan.old_links)


def _check_kept(of: OutputFolder, plans: list[FolderPlan], clusterings: list, entries: dict, files: list[str],
                links: dict[str, list[str]], settings: dict[str, LinkSettings]) -> tuple[list[FolderPlan], dict]:
    """The folders a rerun keeps, checked against what the user may have deleted since
    (see :mod:`mhc.repair`): those gone (or of hard links or copies) are written anew, the
    rest get their missing links back at the commit. Returns the plans and the repairs by key."""
    kept = [(k, plan, c) for k, (plan, c) in enumerate(zip(plans, clusterings)) if plan.keep]
    if not kept:
        return plans, {}
    since = written_at(of.out)
    plans, repairs = list(plans), {}
    for k, plan, c in kept:
        parts = {t["folder"]: p for t, p in zip(entries[c.key]["thresholds"], c.partitions)}
        checked = {n: check_kept(of.out, c.key, n, parts[n], files, links[c.key], settings[c.key], since,
                                 of.not_made) for n in plan.keep}
        anew = [n for n, r in checked.items() if r is False]
        fixes = [r for r in checked.values() if isinstance(r, Repair)]
        if anew:
            plans[k] = FolderPlan(plan.key, plan.write + [(n, parts[n]) for n in anew],
                                  [n for n in plan.keep if n not in anew], plan.delete + anew, plan.patches,
                                  plan.old_links)
        if fixes:
            repairs[c.key] = fixes
    return plans, repairs


def _pages_there(of: OutputFolder, prev_algos: dict) -> bool:
    """Whether every report page the previous output lists is there: one deleted by hand
    sends the rerun down the path that renders the pages it cannot reuse."""
    return all((of.out / "report" / key / name).is_file()
               for key, e in prev_algos.items() for name in (e.get("pages") or {}))


def _old_links(previous: dict, entry: dict) -> list[str]:
    from .names import recorded_link_names

    return recorded_link_names(previous.get("files", []), entry)


def _as_made(of: OutputFolder, previous: dict, entry: dict, names: list[str]):
    """For an algorithm folder of copies or hard links: :func:`mhc.ownership.copies_as_made`
    (None for symlinks)."""
    mode = entry.get("link", "symlink")
    if mode == "symlink":
        return None
    info = previous.get("file_info") or {}
    sets_own = (lambda: not keeps_times(of.parent)) if mode == "copy" else None  # (a hard link has its original's)
    return copies_as_made(previous.get("files", []), names, info.get("bytes") or [], info.get("mtime") or [],
                          written_at(of.out), sets_own)


def _page_reuse(of: OutputFolder, previous: dict | None):
    """Keep a report page of the previous output whose digest is the new page's."""
    old = {key: e.get("pages") or {} for key, e in (previous or {}).get("algorithms", {}).items()}

    def reuse(key: str, name: str, digest: str) -> bool:
        path = of.out / "report" / key / name
        if old.get(key, {}).get(name) != digest or not path.is_file() or path.is_symlink():
            return False
        of.keep(f"report/{key}/{name}")
        return True
    return reuse


def write_errors_csv(path: Path, errors: list[FileError]) -> None:
    """``path,reason`` per file. Names that are not UTF-8 are written as their own bytes
    (not as escapes), so each row maps back to its file."""
    with open(path, "w", encoding="utf-8", errors="surrogateescape", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "reason"])
        for e in errors:
            w.writerow([e.path, e.reason])


# -- a run's output ----------------------------------------------------------------------
def write_output(of: OutputFolder, result, previous: dict | None, progress: Progress | None = None) -> bool:
    """Write ``result`` into the output folder ``of`` (see :mod:`mhc.output`): unchanged
    folders are kept, changed ones written, the report rebuilt. When nothing in the tree
    changed only ``summary.json``, ``errors.csv`` and ``index.html`` are replaced
    (atomically). Returns True if the tree was rebuilt."""
    from .names import naming_for, unique_link_names
    from .report import write_report
    from .summary import algorithm_entry, summary_dict, write_json

    o = result.options
    files = result.files
    prev_algos = (previous or {}).get("algorithms", {}) if (previous or {}).get("format") == 2 else {}
    entries, plans, links, settings = {}, [], {}, {}
    for c in result.algorithms:
        mode, relative, unclustered = c.link_settings or (o.link, o.relative_links, not o.no_unclustered_links)
        ls = LinkSettings(mode, relative, unclustered, o.changed_only)
        names = unique_link_names(files, c.hexes, naming_for(mode))
        fd = files_digest(files, names, None if mode == "symlink" else (result.collection.sizes, result.collection.mtimes))
        entry = algorithm_entry(c, ls, [folder_digest(fd, p, ls) for p in c.partitions], computed=not c.carried)
        entries[c.key], links[c.key], settings[c.key] = entry, names, ls
        plan = plan_folders(c.key, entry["thresholds"], c.partitions, prev_algos.get(c.key), ls)
        plans.append(with_patches(plan, previous if prev_algos else None, files, names, ls))
    plans, repairs = _check_kept(of, plans, result.algorithms, entries, files, links, settings)
    of.refuse_not_made()
    summary = summary_dict(result, entries)
    gone = [k for k in (previous or {}).get("algorithms", {}) if k not in entries]
    same_report = (previous or {}).get("options", {}).get("no_report") == o.no_report and _pages_there(of, prev_algos)
    if (previous is not None and not gone and same_report and not repairs
            and all(p.key in prev_algos and p.unchanged for p in plans)):
        for key, e in summary["algorithms"].items():  # the pages stay: so do their digests
            if prev_algos[key].get("pages") is not None:
                e["pages"] = prev_algos[key]["pages"]
        thumb = ((previous or {}).get("file_info") or {}).get("thumb")  # ... and the thumbnails they show
        if thumb is not None and previous.get("files") == summary["files"]:
            summary["file_info"]["thumb"] = thumb
        of.replace_file("errors.csv", lambda p: write_errors_csv(p, result.errors))
        of.replace_file("summary.json", lambda p: write_json(p, summary))
        if not o.no_report:
            from .report import render_index

            of.replace_file("index.html", lambda p: p.write_text(render_index(summary), encoding="utf-8"))
        thumbs_written(of.out / THUMB_DIR, flush=True)  # (those made for files changed in place)
        stamp(of.out)
        return False
    for key in gone:  # folders of algorithms no longer in the output: they must all be mhc's
        old = previous["algorithms"][key]
        listed = _old_links(previous, old) if "hashes" in old else []
        names, made = set(listed), _as_made(of, previous, old, listed)
        for t in old.get("thresholds", []):
            if (of.out / key / t["folder"]).is_dir():
                of.check_deleting(f"{key}/{t['folder']}", names, made is not None, made)
    staging = of.stage()
    todo = plan_writes(of, staging, plans, files, links, settings, previous)
    of.refuse_not_made()  # every check has run, nothing has changed: all of them in one line
    check_room_for_copies(staging, ((part, settings[plan.key].unclustered) for plan in todo
                                    if settings[plan.key].mode == "copy" for _, part in plan.write),
                          result.collection.sizes)
    for key, fixes in repairs.items():  # after the moves that bring their folders into the new tree
        for fix in fixes:
            queue_repair(of, key, fix, files, links[key], settings[key].relative)
    n_links = sum(len(files) * len(p.write) + sum(len(m) for pt, _ in p.patches for _, m in pt.fresh) for p in todo)
    maker, used_thumbs = None, None
    if (forked.available() and FORK_MIN_LINKS <= n_links <= FORK_MAX_LINKS and len(files) <= FORK_MAX_FILES
            and not o.no_report):
        # the links in a child while this process renders the report (see mhc.forked); not for
        # a handful of links (a patched rerun), where the fork costs more than it saves, nor in
        # a large process: after the fork every page it writes is copied first (at 100,000 files
        # one-new-file reruns took 10-14 s with the fork, 7-10 s without)
        maker = forked.Forked(lambda: make_folders(staging, todo, files, links, settings))
    else:
        make_folders(staging, todo, files, links, settings, progress)
    try:
        try:
            if not o.no_report:  # first: it records each page's digest in the summary
                used_thumbs = write_report(staging, of.mhc_home(), summary, result, progress=progress,
                                           workers=o.workers, file_timeout=o.file_timeout,
                                           reuse=_page_reuse(of, previous))
            write_json(staging / "summary.json", summary)
            write_errors_csv(staging / "errors.csv", result.errors)
        except OSError as e:
            raise fault(e, "cannot write the output") from None
        if maker is not None:
            try:
                maker.wait()
            except forked.Died as e:
                # Its folders are all new, in mhc's own staging folder (the kept ones are only
                # moved in at the commit): remade here, the run goes on rather than ending.
                log.warning("%s; made the links in this process instead", e)
                for plan in todo:
                    shutil.rmtree(staging / plan.key, ignore_errors=True)
                make_folders(staging, todo, files, links, settings, progress)
            folders = sum(len(p.write) + len(p.patches) for p in todo)
            report(progress, "write", folders, folders)
    finally:
        if maker is not None:
            maker.stop()  # on any failure here (Ctrl-C too): nothing may write into staging after us
    if (of.out / ".mhc").is_dir():
        of.keep(".mhc")  # thumbnails: made in place, kept across runs
    try:
        of.commit()
    except OSError as e:
        raise fault(e, "cannot replace the output") from None
    # after every change of the commit, and only here, where the kept folders were checked
    # (not in `mhc report`, which keeps them unchecked): what changes later is not mhc's
    stamp(of.out)
    thumbs_written(of.out / THUMB_DIR)  # (the commit wrote them to the disk)
    if used_thumbs is not None:  # once the new report is in place (the old one used them until now)
        from .thumbs import prune_thumbs

        prune_thumbs(of.out, used_thumbs)
    return True


def write_tree(output: str | Path, collection, clusterings: list, *, link: str = "symlink",
               relative_links: bool = False, unclustered_links: bool = True, report: bool = True) -> Path:
    """Write ``clusterings`` of a :class:`~mhc.collection.HashedCollection` as an mhc output
    folder (threshold folders of links, summary.json, errors.csv and, with ``report``, the
    HTML report), replacing an earlier mhc output there. Returns the folder."""
    from .clustering import Clustering
    from .options import Options, validate
    from .pipeline import RunResult

    options = Options(input=Path(collection.root), output=Path(output), link=link, relative_links=relative_links,
                      no_unclustered_links=not unclustered_links, no_report=not report, no_cache=True)
    plan = validate(options)
    clusterings = [clusterings] if isinstance(clusterings, Clustering) else clusterings
    if isinstance(clusterings, str) or not all(isinstance(c, Clustering) for c in clusterings):
        raise UsageError("write_tree takes a list of Clusterings (from collection.sweep), e.g. [clustering]")
    keys = [c.key for c in clusterings]
    if len(set(keys)) < len(keys):  # each is one folder of the output
        raise UsageError(f"write_tree: two clusterings have the folder {next(k for k in keys if keys.count(k) > 1)}; "
                         f"pass each once")
    result = RunResult(str(plan.input), str(plan.output), collection, list(clusterings), options)
    with OutputFolder(plan.output, plan.input, background_retire=False) as of:
        write_output(of, result, of.previous_summary())
    return plan.output
