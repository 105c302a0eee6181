"""What a power cut leaves. The disk's state at a moment is the loop device's image file as
the kernel has been told to write it: a copy of it, mounted (the journal replayed), is what
the machine would find after losing power then.

The disk is ext4 with a journal commit every second and ``noauto_da_alloc`` (ext4's own
guard for files replaced by a rename, which XFS and others lack): the renames of a run
reach the disk within a second, while the kernel may hold the files' data back for half a
minute.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from mhc import Options, run

from conftest import _loop_disk, photo, save

JOURNAL_COMMIT = 1  # seconds (mount -o commit=1)


@pytest.fixture
def ext4_quick_journal(tmp_path: Path):
    yield from _loop_disk(tmp_path, "ext4", f"commit={JOURNAL_COMMIT},noauto_da_alloc")


def _after_power_cut(disk, tmp_path: Path) -> dict[str, bytes]:
    """Every regular file on ``disk`` as a power cut now would leave it (path -> content)."""
    time.sleep(JOURNAL_COMMIT * 2.5)  # the metadata committed (the files' data may not be)
    snap, mnt = tmp_path / "snap.img", tmp_path / "snap"
    subprocess.run(["cp", "--sparse=always", str(disk.img), str(snap)], check=True)
    mnt.mkdir()
    dev = subprocess.run(["losetup", "-f", "--show", str(snap)], capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        subprocess.run(["mount", dev, str(mnt)], check=True, capture_output=True)  # (replays the journal)
        try:
            return {str(p.relative_to(mnt)): p.read_bytes() for p in mnt.rglob("*")
                    if p.is_file() and not p.is_symlink() and "lost+found" not in p.parts}
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
    finally:
        subprocess.run(["losetup", "-d", dev], capture_output=True)
        snap.unlink()
        mnt.rmdir()


def test_a_power_cut_after_a_run_leaves_its_output_whole(ext4_quick_journal, tmp_path):
    """The new tree, swapped in by renames, reached the disk before its files' data: a power
    cut in the half minute after a run left an output of empty files (summary.json among
    them, after which mhc refuses the folder: "summary.json is damaged ... run mhc with a
    new --output"). mhc now writes the tree out before the swap, and a top-level file before
    it replaces the old one."""
    disk = ext4_quick_journal
    inp, out = tmp_path / "in", disk.mnt / "out"
    for k in range(6):
        save(photo(k % 4, (160, 120)), inp / f"p{k}.jpg")
    o = dict(input=inp, output=out, no_cache=True, algorithms=["phash_8"], thresholds="0:8:4", workers=1)
    for algorithms in (["phash_8"],  # a new output
                       ["phash_8", "dhash_8"],  # one replaced
                       ["phash_8", "dhash_8"]):  # nothing changed: its summary, report and errors.csv replaced
        run(Options(**{**o, "algorithms": algorithms}), background_cleanup=False)
        on_disk = _after_power_cut(disk, tmp_path)
        empty = sorted(p for p, data in on_disk.items() if not data)
        assert not empty, f"{len(empty)} empty files after a power cut, e.g. {empty[:3]}"
        summary = json.loads(on_disk["out/summary.json"])
        assert sorted(summary["algorithms"]) == sorted(algorithms)
        assert on_disk["out/summary.json"] == (out / "summary.json").read_bytes()
        assert os.path.getsize(out / "index.html") == len(on_disk["out/index.html"])
