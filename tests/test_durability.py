"""What a power cut leaves. The disk's state at a moment is the loop device's image file as
the kernel has been told to write it: a copy of it, mounted (the journal replayed), is what
the machine would find after losing power then.

The disk is ext4 with a journal commit every second and ``noauto_da_alloc`` (ext4's own
guard for files replaced by a rename, which XFS and others lack): the renames of a run
reach the disk within a second, while the kernel may hold the files' data back for half a
minute.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mhc import Options, run

from conftest import _loop_disk, photo, run_cli, save, tree_digest

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


@contextlib.contextmanager
def _back_after_a_power_cut(disk, tmp_path: Path, script: str, *args: str):
    """Run ``script`` (Python, with ``args`` and a signal file) until it writes the signal
    file, cut the power then (copy the disk's image) and kill it; the machine comes back:
    the disk as it was at the cut, mounted at the same place, for the block."""
    signal_file = tmp_path / "signal"
    child = subprocess.Popen([sys.executable, "-c", script, *args, str(signal_file)])
    try:
        end = time.monotonic() + 120
        while not signal_file.exists() and child.poll() is None and time.monotonic() < end:
            time.sleep(0.05)
        assert signal_file.exists(), "the run never reached the point of the cut"
        time.sleep(JOURNAL_COMMIT * 2.5)  # the metadata so far committed to the disk's journal
        snap = tmp_path / "snap.img"
        subprocess.run(["cp", "--sparse=always", str(disk.img), str(snap)], check=True)  # the power goes
    finally:
        child.kill()
        child.wait()
    assert disk._umount()
    dev = subprocess.run(["losetup", "-f", "--show", str(snap)], capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        subprocess.run(["mount", dev, str(disk.mnt)], check=True, capture_output=True)  # (replays the journal)
        try:
            yield
        finally:
            subprocess.run(["umount", str(disk.mnt)], check=True)
    finally:
        subprocess.run(["losetup", "-d", dev], capture_output=True)


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


@pytest.fixture
def disk_that_fails_writes(tmp_path: Path):
    """An ext4 disk of 128 MB whose image file lies on a tmpfs of 24 MB: the kernel takes
    writes into its cache as if there were room, and the disk fails them (I/O errors) when
    they are written back, as a failing or thin-provisioned disk, or a full server, does."""
    if not (all(shutil.which(t) for t in ("losetup", "mkfs.ext4")) and os.geteuid() == 0):
        pytest.skip("needs root, losetup and mkfs.ext4")
    small, mnt = tmp_path / "small", tmp_path / "mnt"
    small.mkdir()
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(small)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    dev = None
    try:
        img = small / "disk.img"
        with open(img, "wb") as f:
            f.truncate(128 << 20)
        subprocess.run(["mkfs.ext4", "-q", str(img)], check=True, capture_output=True)
        dev = subprocess.run(["losetup", "-f", "--show", str(img)], capture_output=True, text=True,
                             check=True).stdout.strip()
        subprocess.run(["mount", dev, str(mnt)], check=True, capture_output=True)
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
        if dev:
            subprocess.run(["losetup", "-d", dev], capture_output=True)
        subprocess.run(["umount", str(small)], capture_output=True)


def test_a_disk_that_fails_the_writes_of_a_run_gets_no_output_that_says_it_is_complete(disk_that_fails_writes,
                                                                                       tmp_path):
    """The run's copies fit the disk as it reports itself, but the disk fails them when the
    kernel writes them back: mhc said "output: ..." with exit status 0 and the kernel logged
    "potential data loss" half a minute later. The flush before the commit meets the failure:
    one line, exit status 3, and no output."""
    import numpy as np
    from PIL import Image

    inp, out = tmp_path / "in", disk_that_fails_writes / "out"
    inp.mkdir()
    rng = np.random.default_rng(5)
    for k in range(12):  # 1.4 MB each that no compression shrinks: 36 copies, 52 MB
        Image.fromarray(rng.integers(0, 256, (600, 800, 3), dtype=np.uint8)).save(inp / f"n{k}.png", compress_level=1)
    r = run_cli("-i", str(inp), "-o", str(out), "--no-cache", "-a", "phash_8", "-t", "0:8:4", "--link", "copy", "-q")
    assert r.returncode == 3 and len(r.stderr.strip().splitlines()) == 1, (r.returncode, r.stderr)
    # (the loop device passes on its full backing file as an I/O error or, when the flush
    # itself meets it, as "no space"; or, had the disk's journal given up first, its writes
    # are refused as read-only)
    assert re.search(r"failed to write the new output \((Input/output error|No space left on device); see dmesg\); "
                     r"the previous output is unchanged|Read-only file system", r.stderr), r.stderr
    assert not out.exists()


_STOPPED_IN_THE_COMMIT = """
import sys, time
from pathlib import Path
import mhc.output
from mhc import Options, run

made, real = [0], mhc.output.do_change

def change(op, staging):  # the real change; after the 12th, the power goes (the test copies the disk now)
    real(op, staging)
    made[0] += 1
    if made[0] == 12:
        Path(sys.argv[3]).write_text("12")
        time.sleep(600)

mhc.output.do_change = change
run(Options(input=Path(sys.argv[1]), output=Path(sys.argv[2]), no_cache=True, algorithms=["phash_8", "dhash_8"],
            workers=1))
"""


def test_a_power_cut_inside_the_commit_is_undone_whole(ext4_quick_journal, tmp_path):
    """The commit moves the folders it keeps from the old tree into the new one, counting the
    changes begun in its journal, so that a killed run is undone exactly. The count was
    rewritten in place: a power cut found it older than the renames made after it (file data
    reaches the disk later than renames do), the undo missed those moves, and the old output
    lost the folders, removed with the new tree. The count is also kept in the journal's times
    now, which reach the disk in step with the renames."""
    from mhc.output import OutputFolder

    disk = ext4_quick_journal
    inp, out = tmp_path / "in", disk.mnt / "out"
    for k in range(8):
        save(photo(k % 5, (160, 120)), inp / f"p{k}.jpg")
    run(Options(input=inp, output=out, no_cache=True, algorithms=["phash_8", "dhash_8"], workers=1),
        background_cleanup=False)
    before = {p: d for p, d in tree_digest(out).items() if not p.startswith(".mhc")}
    save(photo(9, (160, 120)), inp / "new.jpg")  # the rerun keeps most folders, moved in at its commit
    with _back_after_a_power_cut(disk, tmp_path, _STOPPED_IN_THE_COMMIT, str(inp), str(out)):
        with OutputFolder(out, inp):  # what every mhc run does first: finish what a run left
            pass
        after = {p: d for p, d in tree_digest(out).items() if not p.startswith(".mhc")}
        assert after == before, sorted(set(before) ^ set(after))[:5]


_STOPPED_BEFORE_THE_COMMIT = """
import sys, time
from pathlib import Path
import mhc.output
from mhc import Options, run

def commit(self):  # the thumbnails of the new files are made; the power goes before the commit
    Path(sys.argv[3]).write_text("made")
    time.sleep(600)

mhc.output.OutputFolder.commit = commit
run(Options(input=Path(sys.argv[1]), output=Path(sys.argv[2]), no_cache=True, algorithms=["phash_8"], workers=1))
"""


def test_thumbnails_a_power_cut_left_empty_are_made_again(ext4_quick_journal, tmp_path):
    """The report's thumbnails are made in the live output's .mhc/thumbs, kept across runs
    and reused by name. A power cut during a run, before its commit wrote them out, left the
    new ones empty on the disk, and every later report showed those files as broken images
    (until the files changed). A run now marks the folder while it makes thumbnails; a mark
    left from before the machine restarted has the next run check them and make again those
    that are not whole."""
    disk = ext4_quick_journal
    inp, out = tmp_path / "in", disk.mnt / "out"
    for k in range(4):
        save(photo(k, (160, 120)), inp / f"p{k}.jpg")
    o = Options(input=inp, output=out, no_cache=True, algorithms=["phash_8"], workers=1)
    run(o, background_cleanup=False)
    for k in range(4, 8):  # new files: their thumbnails are made by the next run
        save(photo(k, (160, 120)), inp / f"p{k}.jpg")
    with _back_after_a_power_cut(disk, tmp_path, _STOPPED_BEFORE_THE_COMMIT, str(inp), str(out)):
        thumbs = out / ".mhc" / "thumbs"
        empty = [p.name for p in thumbs.iterdir() if p.stat().st_size == 0]
        assert empty, "this disk kept every thumbnail: the test shows nothing"
        making = thumbs / ".making"
        if making.exists():  # the run was in an earlier boot of the machine than this one
            making.write_text("an earlier boot\n")
        run(o, background_cleanup=False)
        summary = json.loads((out / "summary.json").read_text())
        shown = [t for t in summary["file_info"]["thumb"] if t]
        assert len(shown) == 8
        for t in shown:
            data = (thumbs / t).read_bytes()
            assert data.startswith(b"\xff\xd8") and data.endswith(b"\xff\xd9"), (t, len(data))
        assert not making.exists()


def test_a_not_a_duplicate_mark_is_on_the_disk_when_mhc_ignore_says_it_is_saved(ext4_quick_journal, tmp_path):
    """The hash cache commits without waiting for the disk (SQLite's WAL with
    synchronous=NORMAL: a power cut may roll back the last transactions, which for hashes
    only means computing them again). The user's own "not a duplicate" marks were saved the
    same way: a power cut in the half minute after `mhc ignore` lost the mark it had
    reported saved, unless `mhc ignore` was the last to close the cache (which writes it
    out). Those writes now wait for the disk."""
    import sqlite3

    disk = ext4_quick_journal
    inp, cache = tmp_path / "in", disk.mnt / "cache.sqlite"
    a, b = save(photo(1), inp / "a.jpg"), save(photo(2), inp / "b.jpg")
    r = run_cli("-i", str(inp), "-o", str(tmp_path / "out"), "--cache", str(cache), "-a", "phash_8", "-q")
    assert r.returncode == 0, r.stderr
    time.sleep(JOURNAL_COMMIT * 2.5)
    subprocess.run(["sync"], check=True)  # the run's hashes on the disk: only the mark is new
    other = sqlite3.connect(cache)  # another mhc has the cache open (a run, the report's page)
    try:
        other.execute("SELECT count(*) FROM files").fetchone()
        r = run_cli("ignore", "--cache", str(cache), str(a), str(b))
        assert r.returncode == 0, r.stderr
        on_disk = _after_power_cut(disk, tmp_path)
    finally:
        other.close()
    copy = tmp_path / "after"
    copy.mkdir()
    for name, data in on_disk.items():
        if name in ("cache.sqlite", "cache.sqlite-wal"):
            (copy / name).write_bytes(data)
    db = sqlite3.connect(copy / "cache.sqlite")
    try:
        assert db.execute("SELECT count(*) FROM ignored").fetchone()[0] == 1
    finally:
        db.close()
