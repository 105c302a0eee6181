"""The output layout's invariants, checked on a real output folder (any options).

Returns a list of problems (empty: all hold), so a matrix of runs can report every
failing combination at once.
"""
from __future__ import annotations

import html
import os
import re
import unicodedata
import urllib.parse
from pathlib import Path

from mhc.names import recorded_link_names
from mhc.summary import partitions, read_summary

THR = re.compile(r"^thr_(\d{3,})_unclustered_(\d+)$")
CLUSTER = re.compile(r"^(\d{3,})_(\d+)$")


def check(out: Path, *, readable: set[str], kinds: dict[str, str] | None = None,
          ignored: list[tuple[str, str]] = ()) -> list[str]:
    """Problems with the output folder ``out``. ``readable``: every file that must appear;
    ``kinds``: path -> image/video; ``ignored``: pairs that must never share a cluster.
    Caps and the image/video separation are checked against each folder's own recorded
    settings (folders kept from earlier runs keep theirs)."""
    problems: list[str] = []
    say = problems.append
    s = read_summary(out)
    files = s["files"]
    if set(files) != readable:
        say(f"summary files differ from the readable files: {sorted(set(files) ^ readable)[:3]}")
    for key, entry in s["algorithms"].items():
        names = recorded_link_names(files, entry)
        original = dict(zip(names, files))
        folded = {unicodedata.normalize("NFD", unicodedata.normalize("NFD", n).casefold()) for n in names}
        if entry.get("link_names", 1) >= 3 and len(folded) != len(names):
            say(f"{key}: two link names are one on a case- or normalization-insensitive filesystem")
        mode = entry.get("link", "symlink")
        max_size = entry["settings"].get("max_cluster_size")
        cross_media = entry["settings"].get("cross_media", False)
        parts = partitions(s, key)
        on_disk = {p.name for p in (out / key).iterdir()} if (out / key).is_dir() else set()
        expected = {t["folder"] for t in entry["thresholds"] if t["written"]}
        if on_disk != expected:
            say(f"{key}: folders on disk {sorted(on_disk ^ expected)[:3]} differ from summary.json")
        suggested = (entry.get("suggested") or {}).get("threshold")
        rec = s.get("recommended") or {}
        for what, thr in (("suggested", suggested), ("open-first", rec.get("threshold") if rec.get("key") == key
                                                     else None)):
            if thr is not None and not any(t["threshold"] == thr and t["written"] for t in entry["thresholds"]):
                say(f"{key}: the {what} threshold {thr} has no folder")  # (--changed-only wrote another)
        prev_groups = None
        for t, p in zip(entry["thresholds"], parts):
            # summary's counts agree with its own clusters
            if (t["clusters"], t["clustered_files"], t["unclustered"]) != (len(p.clusters), p.clustered_files,
                                                                            len(p.unclustered)):
                say(f"{key}/{t['folder']}: counts disagree with the joins")
            groups = [{files[i] for i in c} for c in p.clusters]
            label = {f: k for k, g in enumerate(groups) for f in g}
            for g in prev_groups or []:  # clusters nest across thresholds
                if len({label.get(f) for f in g}) != 1 or label.get(next(iter(g))) is None:
                    say(f"{key}/{t['folder']}: a cluster of the previous threshold is split")
            prev_groups = groups
            for g in groups:
                if max_size and len(g) > max_size:
                    say(f"{key}/{t['folder']}: a cluster of {len(g)} exceeds the cap {max_size}")
                if kinds and not cross_media and len({kinds[f] for f in g}) > 1:
                    say(f"{key}/{t['folder']}: images and videos share a cluster")
                for a, b in ignored:
                    if a in g and b in g:
                        say(f"{key}/{t['folder']}: an ignored pair shares a cluster")
            if t["written"]:
                problems += _check_folder(out / key / t["folder"], t, groups, readable, original, mode,
                                          entry.get("unclustered_links", True), f"{key}/{t['folder']}")
    if (out / "index.html").exists():
        problems += _check_report(out)
    return problems


def _check_folder(folder: Path, t: dict, groups: list[set[str]], readable: set[str], original: dict, mode: str,
                  unclustered_links: bool, where: str) -> list[str]:
    problems = []
    say = problems.append
    m = THR.match(folder.name)
    if t["folder"].startswith("thr_") and (not m or int(m[1]) != t["threshold"]):
        say(f"{where}: folder name does not match its threshold")
    subs = sorted(folder.iterdir())
    clusters = [d for d in subs if not d.name.startswith("unclustered")]
    unclustered = [d for d in subs if d.name.startswith("unclustered")]
    if len(unclustered) != 1:
        return [f"{where}: {len(unclustered)} unclustered folders"]
    seen: list[str] = []
    tree_groups = []
    sizes = []
    for rank, d in enumerate(clusters, 1):
        cm = CLUSTER.match(d.name)
        entries = list(os.scandir(d))
        if not cm or int(cm[1]) != rank or int(cm[2]) != len(entries):
            say(f"{where}/{d.name}: name does not match rank {rank} / size {len(entries)}")
        sizes.append(len(entries))
        targets = {_target(e, original, mode) for e in entries}
        tree_groups.append(targets)
        seen += [_target(e, original, mode) for e in entries]
    if sizes != sorted(sizes, reverse=True):
        say(f"{where}: clusters are not ordered largest first")
    u = unclustered[0]
    u_entries = list(os.scandir(u))
    n_unclustered = len(readable) - sum(len(g) for g in groups)
    if u.name != f"unclustered_{n_unclustered}" or (m and int(m[2]) != n_unclustered):
        say(f"{where}: unclustered count in the names is not {n_unclustered}")
    if unclustered_links:
        if len(u_entries) != n_unclustered:
            say(f"{where}: {len(u_entries)} links in {u.name}")
        seen += [_target(e, original, mode) for e in u_entries]
        if sorted(seen) != sorted(readable):
            say(f"{where}: not every readable file exactly once ({len(seen)} entries for {len(readable)} files)")
    elif u_entries:
        say(f"{where}: unclustered folder should be empty")
    if sorted(map(sorted, tree_groups)) != sorted(map(sorted, groups)):
        say(f"{where}: the tree's clusters differ from summary.json's")
    return problems


def _target(e: os.DirEntry, original: dict, mode: str) -> str:
    if e.is_symlink():  # a relative target is joined, not resolved (folders on the way may be links)
        return os.path.normpath(os.path.join(os.path.dirname(e.path), os.readlink(e.path)))
    return original.get(e.name, e.path)


_LINK = re.compile(r'(?:href|src)="([^"#]+)')


def _check_report(out: Path) -> list[str]:
    """Every local href and src of the report's pages resolves."""
    problems = []
    pages = [out / "index.html", *sorted((out / "report").rglob("*.html"))]
    for page in pages:
        for ref in _LINK.findall(page.read_text(encoding="utf-8")):
            ref = html.unescape(ref)
            if ref.startswith(("http:", "https:", "data:")):
                continue
            if ref.startswith("file://"):
                path = Path(os.fsdecode(urllib.parse.unquote_to_bytes(ref[7:])))  # (names not UTF-8: bytes)
            else:
                path = (page.parent / os.fsdecode(urllib.parse.unquote_to_bytes(ref))).resolve()
            if not os.path.lexists(path):
                problems.append(f"report: {page.relative_to(out)} links to a missing {ref}")
                break
    return problems
