"""Nothing lost, ever: the cache and the output folder under real-world faults (issue 13).

Full disks and read-only folders are real: small tmpfs mounts (these tests need root and
skip otherwise, saying so). Dead workers are real processes killed with SIGKILL.
"""
from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import mhc
from mhc import EnvironmentFault, HashCache, Options, run

from conftest import ROOT, copy_tree, make_video, photo, run_cli, save, tree_digest


def _mount(where: Path, size: str, *opts: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join((f"size={size}",) + opts), "tmpfs", str(where)],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a small tmpfs here ({r.stderr.strip()}); the disk-full tests need root")


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB filesystem at tmp_path/disk (a tmpfs), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    _mount(disk, "3m")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte; returns the filler file (delete it to free the space)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for chunk in (65536, 512, 1):  # to the last byte
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * chunk):
                    pass
    finally:
        os.close(fd)
    return filler


@pytest.fixture
def photos(tmp_path) -> Path:
    inp = tmp_path / "photos"
    for g in range(3):
        save(photo(g, (200, 150)), inp / f"g{g}.jpg")
        save(photo(g, (200, 150)).resize((120, 90)), inp / "food" / f"g{g} small.jpg")
    return inp


# 1 ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["a photo", "the input folder", "another folder", "someone's database"])
def test_cache_path_at_an_existing_file_or_folder_is_refused_untouched(photos, tmp_path, where):
    import sqlite3

    other = tmp_path / "other"
    other.mkdir()
    db = tmp_path / "lightroom.sqlite"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE catalog (x)")
    target = {"a photo": photos / "food" / "g0 small.jpg", "the input folder": photos, "another folder": other,
              "someone's database": db}[where]
    before = tree_digest(tmp_path)
    r = run_cli("-i", str(photos), "-o", str(tmp_path / "out"), "--cache", str(target), "-q")
    assert r.returncode == 2, r.stderr
    assert "--cache" in r.stderr and "Traceback" not in r.stderr  # shown with -q too
    assert tree_digest(tmp_path) == before  # nothing renamed, nothing created


def test_a_user_cache_folder_that_is_a_file_names_the_default_not_a_cache_option(photos, tmp_path):
    """XDG_CACHE_HOME set to a file: the line said "--cache …/mhc/hashes.sqlite: … is a file",
    of an option the user never typed."""
    (tmp_path / "not a folder").write_text("x")
    before = tree_digest(tmp_path)
    r = run_cli("-i", str(photos), "-o", str(tmp_path / "out"), "-q",
                env={"XDG_CACHE_HOME": str(tmp_path / "not a folder")})
    assert r.returncode == 2 and r.stderr.strip() == (
        f"Error: the default hash cache {tmp_path / 'not a folder' / 'mhc' / 'hashes.sqlite'} (in your user cache "
        f"folder): {tmp_path / 'not a folder'} is a file, not a folder; set XDG_CACHE_HOME to a folder, or pass "
        f"--cache FILE"), r.stderr
    assert tree_digest(tmp_path) == before


@pytest.mark.parametrize("where", ["another output", "a file in it", "a file deep in it"])
def test_cache_in_another_mhc_output_is_refused(photos, tmp_path, where):
    """A cache put in another mhc output is a file mhc did not write there: that output
    could never be written again (every rerun refused it). Refused before any work, and
    no longer suggested ("give a file path, e.g. OUT/mhc-cache.sqlite")."""
    other = tmp_path / "other-out"
    assert run_cli("-i", str(photos), "-o", str(other), "-a", "phash_8", "-q").returncode == 0
    target = {"another output": other, "a file in it": other / "c.sqlite",
              "a file deep in it": other / "phash_8" / "c.sqlite"}[where]
    before = tree_digest(other)
    r = run_cli("-i", str(photos), "-o", str(tmp_path / "out"), "--cache", str(target), "-a", "phash_8")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"mhc output folder {other}" in r.stderr or "is an mhc output folder" in r.stderr, r.stderr
    assert "mhc-cache.sqlite" not in r.stderr
    assert tree_digest(other) == before and not (tmp_path / "out").exists()
    assert run_cli("-i", str(photos), "-o", str(other), "-a", "phash_8", "-q").returncode == 0  # still writable


@pytest.mark.parametrize("where", ["beside its folders", "in a threshold folder", "its algorithm folder"])
def test_output_inside_another_mhc_output_is_refused(photos, tmp_path, where):
    """The same for -o: an output made inside another one was a folder mhc did not make
    there, and that output's next run was refused. One of its own folders given (-o
    out/phash_8) was "not empty and not made by mhc", which it was."""
    other = tmp_path / "other-out"
    assert run_cli("-i", str(photos), "-o", str(other), "-a", "phash_8", "-t", "0", "-q").returncode == 0
    nested = {"beside its folders": other / "mine", "its algorithm folder": other / "phash_8",
              "in a threshold folder": next((other / "phash_8").iterdir()) / "x"}[where]
    before = tree_digest(other)
    r = run_cli("-i", str(photos), "-o", str(nested), "-a", "phash_8")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"inside the mhc output folder {other}" in r.stderr and f"e.g. {tmp_path / nested.name}" in r.stderr
    assert f"or -o {other} to write that output again" in r.stderr
    assert tree_digest(other) == before
    assert run_cli("-i", str(photos), "-o", str(other), "-a", "phash_8", "-t", "1", "-q").returncode == 0


DAMAGE = {
    "cut short": lambda text: text[:len(text) // 2],
    "a folder name out of the output": lambda text: _edit(text, lambda d: d["algorithms"]["phash_8"]["thresholds"][0]
                                                          .__setitem__("folder", "../../victim")),
    "an algorithm key out of the output": lambda text: _edit(text, lambda d: d["algorithms"].__setitem__(
        "../victim", d["algorithms"]["phash_8"])),
    "joins past the files": lambda text: _edit(text, lambda d: d["algorithms"]["phash_8"]["joins"]["j"]
                                               .__setitem__(0, 10_000)),
    "files dropped": lambda text: _edit(text, lambda d: d.__setitem__("files", d["files"][:2])),
    # the right shape, a value of the wrong type or missing: "failed unexpectedly" (exit 70)
    "a count that is a text": lambda text: _edit(text, lambda d: d["algorithms"]["phash_8"]["thresholds"][1]
                                                 .__setitem__("clusters", "2")),
    "a count missing": lambda text: _edit(text, lambda d: d["algorithms"]["phash_8"]["thresholds"][0]
                                          .pop("unclustered")),
    "a width that is a text": lambda text: _edit(text, lambda d: d["file_info"]["width"].__setitem__(0, "200")),
    "a path with a NUL": lambda text: _edit(text, lambda d: d["files"].__setitem__(0, d["files"][0] + "\0")),
    "deleted": None,
}


def _edit(text: str, change) -> str:
    doc = json.loads(text)
    change(doc)
    return json.dumps(doc)


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_summary_is_named_and_nothing_is_touched(photos, tmp_path, damage):
    """summary.json tells mhc which folders it made. Cut short, edited or deleted (a sync
    tool, a hand), it made the rerun, `report` and `pairs` fail "unexpectedly" (IndexError,
    TypeError: exit 70), and a folder name like ../../victim was a path outside the output.
    Now: one line naming the file and what to do, exit 2, nothing moved anywhere."""
    out = tmp_path / "out"
    assert run_cli("-i", str(photos), "-o", str(out), "-a", "phash_8", "-t", "0:4:2", "-q").returncode == 0
    victim = tmp_path / "victim"
    (victim / "001_2").mkdir(parents=True)
    (victim / "001_2" / "keep.jpg").write_bytes(b"mine")
    summary = out / "summary.json"
    if DAMAGE[damage] is None:
        summary.unlink()
    else:
        summary.write_text(DAMAGE[damage](summary.read_text()))
    before = tree_digest(tmp_path)
    for args in (["-i", str(photos), "-o", str(out), "-a", "phash_8", "-t", "0:4:2"], ["report", "-o", str(out)],
                 ["pairs", "-o", str(out), "-a", "phash_8", "-t", "4"], ["cache", "info", "-o", str(out)]):
        r = run_cli(*args)
        # (the run says it before scanning: a large collection's scan takes minutes)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
        assert f"{summary} is " in r.stderr and "cannot tell which folders" in r.stderr, r.stderr
        assert "new --output" in r.stderr and "unexpectedly" not in r.stderr
        assert tree_digest(tmp_path) == before
    # the way out it names works
    assert run_cli("-i", str(photos), "-o", str(tmp_path / "new"), "-a", "phash_8", "-q").returncode == 0


def test_every_field_read_back_from_a_summary_is_checked_by_type(photos, tmp_path):
    """Each field the rerun, `report` and `pairs` read, changed to another type or removed,
    is named by mhc.summary.damage (the one line of the test above), where it ended them
    with a TypeError or KeyError; and every kind of output mhc writes passes the check."""
    from mhc.summary import damage

    outs = {}
    for name, extra in (("plain", ["-a", "phash_8,pdq_16"]), ("hdbscan", ["-a", "phash_8", "--method", "hdbscan"]),
                        ("combined", ["--require", "phash_8:10", "--require", "dhash_8:12"]),
                        ("ssim", ["-a", "phash_8", "--verify", "ssim", "--linkage", "complete"]),
                        ("crops", ["-a", "phash_8", "--crops", "--link", "copy"])):
        outs[name] = tmp_path / name
        assert run_cli("-i", str(photos), "-o", str(outs[name]), "-q", *extra).returncode == 0
    docs = {name: json.loads((out / "summary.json").read_text()) for name, out in outs.items()}
    for name, doc in docs.items():
        assert damage(doc) is None, name
    doc = docs["plain"]
    assert doc["recommended"] and doc["algorithms"]["phash_8"]["suggested"], "the fields below are all there"
    a, t, s = "algorithms.phash_8.", "algorithms.phash_8.thresholds[0].", "algorithms.phash_8.suggested."
    fields = {  # a path into the document -> the words naming it
        ("algorithms", "phash_8", "bits"): a + "bits", ("algorithms", "phash_8", "size"): a + "size",
        ("algorithms", "phash_8", "method"): a + "method", ("algorithms", "phash_8", "computed_now"): a + "computed_now",
        ("algorithms", "phash_8", "link"): a + "link", ("algorithms", "phash_8", "pages"): a + "pages",
        ("algorithms", "phash_8", "hashes", 2): a + "hashes",  # ("x": int(x, 16) in the report)
        ("algorithms", "phash_8", "settings", "thresholds"): a + "settings.thresholds",
        ("algorithms", "phash_8", "settings", "linkage"): a + "settings.linkage",
        ("algorithms", "phash_8", "settings", "max_cluster_size"): a + "settings.max_cluster_size",
        ("algorithms", "phash_8", "settings", "verify"): a + "settings.verify",
        ("algorithms", "phash_8", "thresholds", 0, "largest"): t + "largest",
        ("algorithms", "phash_8", "thresholds", 0, "threshold"): t + "threshold",
        ("algorithms", "phash_8", "suggested", "persistent"): s + "persistent",
        ("algorithms", "phash_8", "suggested", "explanation"): s + "explanation",
        ("algorithms", "phash_8", "suggested"): a + "suggested",
        ("recommended", "threshold"): "recommended.threshold", ("recommended",): "recommended",
        ("file_info", "bytes"): "file_info.bytes", ("file_info", "taken"): "file_info.taken",
        ("file_info", "same_file_as"): "file_info.same_file_as", ("counts",): "counts", ("aliases",): "aliases",
    }
    # may be null, or missing in the summary of an older mhc of this format
    OPTIONAL = {"suggested", "recommended", "max_cluster_size", "verify", "link", "pages", "same_file_as", "counts",
                "aliases", "persistent", "explanation"}
    for path, said in fields.items():
        for value in ("x", [None], -1, {"a": [1]}, None):
            bad = json.loads(json.dumps(doc))
            *parents, last = path
            at = bad
            for k in parents:
                at = at[k]
            if value is None and last not in OPTIONAL:
                del at[last]
            elif value is None or (value == -1 and last == "verify") or (value == "x" and last == "explanation") or (
                    isinstance(value, dict) and last == "suggested"):
                continue  # (null or nothing is valid there, an SSIM floor may be below 0, a text is a text, and
                # a suggestion's fields are all optional: the first format-2 mhc's had others)
            else:
                at[last] = value
            problem = damage(bad)
            # (what folder names and file indexes depend on is checked first, in other words:
            # "algorithm phash_8: not an algorithm entry", "'file_info' does not hold one value per file")
            assert problem is not None and (problem.startswith(said) or "phash_8" in said and problem.startswith(
                "algorithm phash_8: ") or "file_info" in said and problem.startswith("'file_info'")), (path, value,
                                                                                                         problem)
    # the first format-2 mhc wrote its suggestion with other fields: still an output mhc reads
    old = json.loads(json.dumps(doc))
    old["algorithms"]["phash_8"]["suggested"] = {"threshold": 8, "median": 30.5, "spread": 4.1, "sample_files": 9,
                                                 "expected_false_pairs": 0.1, "explanation": "fewer than one"}
    assert damage(old) is None
    bad = json.loads(json.dumps(doc))  # "open this first" at a folder its algorithm does not have (StopIteration)
    bad["recommended"]["threshold"] = 999
    assert damage(bad) == "recommended.threshold is not one of its folder's thresholds"
    bad = json.loads(json.dumps(docs["combined"]))
    key = next(k for k in bad["algorithms"] if k.startswith("combined_"))
    bad["algorithms"][key]["settings"]["require"] = ["phash_8:ten"]
    assert damage(bad) == f"algorithms.{key}.settings.require is not a list of ALGORITHM:THRESHOLD"
    bad = json.loads(json.dumps(docs["hdbscan"]))
    del bad["algorithms"]["phash_8"]["settings"]["min_cluster_size"]
    assert damage(bad) == "algorithms.phash_8.settings.min_cluster_size is missing"
    bad = json.loads(json.dumps(docs["crops"]))
    bad["file_info"]["crop_of"][0] = [99, 0.5]
    assert damage(bad).startswith("file_info.crop_of")


def test_an_mhc_output_as_input_is_refused_but_a_threshold_folder_is_not(photos, tmp_path):
    """An output (or one algorithm's folder in it) holds links to every file once per
    threshold folder: clustered, each file was its own duplicate (52 photos -> 1,092 files,
    clusters of 147). A threshold folder holds each file once: a fine input."""
    out = tmp_path / "out"
    assert run_cli("-i", str(photos), "-o", str(out), "-a", "phash_8", "-t", "0:4:2", "-q").returncode == 0
    for inp, what in ((out, "is an mhc output folder"), (out / "phash_8", "is an algorithm folder")):
        for args in (["-o", str(tmp_path / "again")], ["pairs", "--cache", str(tmp_path / "c.sqlite")]):
            cmd = [args[0], "-i", str(inp), *args[1:], "-a", "phash_8", "-t", "2"] if args[0] == "pairs" else \
                ["-i", str(inp), *args, "-a", "phash_8"]
            r = run_cli(*cmd)
            assert r.returncode == 2 and what in r.stderr and f"e.g. {photos}" in r.stderr, r.stderr
    assert not (tmp_path / "again").exists()
    threshold = next((out / "phash_8").iterdir())
    r = run_cli("-i", str(threshold), "-o", str(tmp_path / "again"), "-a", "phash_8", "-q")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert len(summary["files"]) == len(list(photos.rglob("*.jpg")))  # each file once


def test_the_whole_filesystem_as_input_is_named(tmp_path):
    r = run_cli("-i", "/", "-o", str(tmp_path / "out"), "-a", "phash_8")
    assert r.returncode == 2 and "is the whole filesystem" in r.stderr and "/-clusters" not in r.stderr, r.stderr


# 2 ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["report", ".mhc"])
def test_files_put_in_report_or_mhc_folders_are_never_deleted(photos, tmp_path, where):
    out = tmp_path / "out"
    assert run_cli("-i", str(photos), "-o", str(out), "-a", "phash_8", "-t", "0:4:2", "-q").returncode == 0
    mine = out / where / "my notes.txt"
    mine.write_text("keep me")
    for args in (["-i", str(photos), "-o", str(out), "-a", "phash_8", "-t", "0:6:2"], ["report", "-o", str(out)]):
        r = run_cli(*args)
        assert r.returncode == 2, r.stderr
        assert "my notes.txt" in r.stderr and "did not make" in r.stderr and "Traceback" not in r.stderr
        assert mine.read_text() == "keep me"


# 3 ---------------------------------------------------------------------------------------------
def test_a_full_disk_never_makes_mhc_throw_away_a_good_cache(photos, tmp_path, small_disk):
    cache = small_disk / "c.sqlite"
    o = dict(input=photos, cache=cache, workers=1, no_report=True)
    first = run(Options(output=tmp_path / "o1", algorithms=["phash_8"], **o))
    assert first.stats.decoded == 6
    filler = fill(small_disk)
    r = run_cli("-i", str(photos), "-o", str(tmp_path / "o2"), "--cache", str(cache), "-a", "phash_8", "-a",
                "dhash_16", "--isometric", "-j", "1", "-q", env={"COLUMNS": "40"})
    assert r.returncode == 0, r.stderr  # the run goes on, with one warning: one line, whatever the width
    assert "cannot be written" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert cache.exists() and not list(small_disk.glob("*corrupt*"))
    assert not list(small_disk.rglob("*.tmp"))  # (the spanning forests' cache: nothing left cut short)
    filler.unlink()
    again = run(Options(output=tmp_path / "o3", algorithms=["phash_8"], **o))
    assert again.stats.decoded == 0  # the cache kept every hash it had


# 4 ---------------------------------------------------------------------------------------------
def test_a_full_disk_during_a_warm_rerun_does_not_lock_the_output(photos, small_disk):
    out = small_disk / "out"
    args = ["-i", str(photos), "-o", str(out), "-a", "phash_8", "-t", "0:4:2", "--no-report"]
    assert run_cli(*args, "-q").returncode == 0
    before = tree_digest(out)
    filler = fill(small_disk)
    r = run_cli(*args)
    assert r.returncode == 3 and "disk is full" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()[-1]) > 0 and "Error:" in r.stderr
    assert tree_digest(out) == before and not list(out.glob(".*mhc-tmp"))
    filler.unlink()
    assert run_cli(*args, "-q").returncode == 0  # not refused as "files mhc did not create"


# 7 ---------------------------------------------------------------------------------------------
def _workers_of(pid: int) -> list[int]:
    """Child processes of ``pid`` (from /proc: fast enough to catch a worker mid-decode)."""
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError):
                with open(f"/proc/{d}/stat", "rb") as f:
                    if int(f.read().rsplit(b")", 1)[1].split()[1]) == pid:
                        kids.append(int(d))
    return kids


@pytest.fixture(scope="module")
def _many(tmp_path_factory) -> Path:
    inp = tmp_path_factory.mktemp("many")
    for k in range(60):
        save(photo(k, (900, 700)), inp / f"p{k:02d}.png")
    return inp


@pytest.fixture
def many(_many, tmp_path) -> Path:
    """60 PNGs, a copy of its own per test (tests replace files in it): made once, 6 s each."""
    return copy_tree(_many, tmp_path / "many")


def test_a_killed_worker_costs_nothing(many, tmp_path):
    """kill -9 of a hashing worker: its batch is retried, every file is hashed, exit 0."""
    p = subprocess.Popen([sys.executable, str(ROOT / "cluster.py"), "-i", str(many), "-o", str(tmp_path / "o"), "-a",
                          "phash_8", "--exact", "-j", "2", "--no-report", "--no-cache"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 60
    while not _workers_of(p.pid) and time.monotonic() < end:
        time.sleep(0.02)
    time.sleep(0.3)
    victims = _workers_of(p.pid)
    assert victims, "no worker started"
    seen, stop = set(victims), threading.Event()

    def watch() -> None:  # every process the run starts from here on (they live >= 50 ms)
        while not stop.is_set():
            seen.update(_workers_of(p.pid))
            time.sleep(0.005)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    os.kill(victims[0], signal.SIGKILL)
    try:
        out, err = p.communicate(timeout=300)
    finally:
        stop.set()
    assert p.returncode == 0, err
    assert "Traceback" not in err and "60 files found: 60 decoded" in " ".join(out.split())
    # the files in flight beside the victim (8 batches of 3 here) are retried one per task in a
    # new pool, not one process each: two pools of two and the link writer, not 2 + 24 + 1
    assert len(seen) <= 8, len(seen)


@contextlib.contextmanager
def _killing_whoever_opens(path: Path, pid: int):
    """Kill (SIGKILL, as the out-of-memory killer does) every child of ``pid`` that holds
    ``path`` open, until the block ends; yields the list of the pids killed."""
    kills: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for w in _workers_of(pid):
                with contextlib.suppress(OSError):
                    for fd in os.listdir(f"/proc/{w}/fd"):
                        if os.readlink(f"/proc/{w}/fd/{fd}") == str(path):
                            os.kill(w, signal.SIGKILL)
                            kills.append(w)
                            break
            time.sleep(0.001)

    threading.Thread(target=watch, daemon=True).start()
    try:
        yield kills
    finally:
        stop.set()


def test_a_file_that_kills_its_worker_twice_is_reported_and_the_run_goes_on(many, tmp_path):
    """Something (the kernel's out-of-memory killer, here this test) kills every process that
    opens one file: that file is reported, all others are hashed."""
    killer = many / "p07.png"
    save(photo(7, (3000, 2400)), killer)  # open long enough to be seen
    p = subprocess.Popen([sys.executable, str(ROOT / "cluster.py"), "-i", str(many), "-o", str(tmp_path / "o"), "-a",
                          "phash_8", "--exact", "-j", "2", "--no-report", "--no-cache", "-q"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with _killing_whoever_opens(killer, p.pid) as kills:
        out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert len(kills) >= 2, kills  # killed in the pool, then again when retried alone
    rows = list(csv.reader((tmp_path / "o" / "errors.csv").open()))
    assert rows[1:] == [[str(killer), "the decoder died (killed by signal 9) on this file: likely out of memory; "
                                      "it was skipped"]]
    targets = {os.readlink(x) for x in (tmp_path / "o" / "phash_8").rglob("*") if x.is_symlink()}
    assert len(targets) == 59


def test_a_file_whose_decoding_takes_longer_than_the_file_timeout_is_skipped(many, tmp_path):
    """A decoder that never returns (FFmpeg looping on a damaged stream, a read from a share
    that stopped answering) held the run forever at one file. Here a real slow decode against
    --file-timeout 0.3: a JPEG 2000 of 16 megapixels of noise, coded losslessly at one
    resolution level, so mhc cannot decode it reduced (2 s here; a PNG of 169 megapixels,
    used before, took 0.18 s on a fast machine and was hashed in time). That file is
    reported, every other one is hashed, exit 0. Wrong values are refused in one line."""
    import numpy as np
    from PIL import Image

    slow = many / "scan.jp2"
    Image.fromarray(np.random.default_rng(7).integers(0, 256, (4000, 4000), dtype=np.uint8)).save(
        slow, num_resolutions=1)
    r = run_cli("-i", str(many), "-o", str(tmp_path / "o"), "-a", "phash_8", "-j", "2", "--no-report", "--no-cache",
                "--file-timeout", "0.3", "-q")
    assert r.returncode == 0, r.stderr
    rows = list(csv.reader((tmp_path / "o" / "errors.csv").open()))
    assert rows[1:] == [[str(slow), "its decoding took longer than 0.3 s (a damaged file that hangs the decoder, or a "
                                    "disk that stopped answering); it was skipped: raise --file-timeout if it is only "
                                    "slow"]]
    targets = {os.readlink(x) for x in (tmp_path / "o" / "phash_8").rglob("*") if x.is_symlink()}
    assert len(targets) == 60 and str(slow) not in targets
    # one worker (-j 1, a one-core machine) has the limit too: its files are decoded in a pool of one
    r = run_cli("-i", str(many), "-o", str(tmp_path / "o1"), "-a", "phash_8", "-j", "1", "--no-report", "--no-cache",
                "--file-timeout", "0.3", "-q")
    assert r.returncode == 0, r.stderr
    assert [row[0] for row in csv.reader((tmp_path / "o1" / "errors.csv").open())][1:] == [str(slow)]
    # the default (300 s) hashes it
    r = run_cli("-i", str(many), "-o", str(tmp_path / "o"), "-a", "phash_8", "-j", "2", "--no-report", "--no-cache",
                "-q")
    assert r.returncode == 0 and len(list(csv.reader((tmp_path / "o" / "errors.csv").open()))) == 1, r.stderr
    # hashes cached, its thumbnail made in the report's own pool: the same limit, one warning
    cache = tmp_path / "c.sqlite"
    assert run_cli("-i", str(many), "-o", str(tmp_path / "warm"), "--cache", str(cache), "-a", "phash_8", "-t", "0",
                   "--no-report", "-q").returncode == 0
    r = run_cli("-i", str(many), "-o", str(tmp_path / "o3"), "--cache", str(cache), "-a", "phash_8", "-t", "0",
                "-j", "2", "--file-timeout", "0.3", "-q")
    assert r.returncode == 0 and r.stderr.strip() == (
        f"no thumbnail for {slow}: decoding it took longer than 0.3 s (--file-timeout); the report shows \"no "
        f"preview\""), r.stderr
    assert len(list((tmp_path / "o3" / ".mhc" / "thumbs").glob("*.jpg"))) == 60
    for wrong in ("-1", "x", "nan", "inf", "1e300"):
        r = run_cli("-i", str(many), "-o", str(tmp_path / "o2"), "--file-timeout", wrong)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--file-timeout" in r.stderr \
            and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "o2").exists()


def test_a_video_that_kills_its_decoder_costs_only_itself_in_a_small_run(tmp_path):
    """Fewer than 24 files were decoded in mhc's own process: a video whose decoder crashed
    (a segfault in FFmpeg; here this test's SIGKILL, as in the tests above) or hung ended or
    held the whole run. Videos always go to worker processes now: it is reported, the others
    are hashed, exit 0."""
    inp = tmp_path / "in"
    for k in range(5):
        save(photo(k, (320, 240)), inp / f"p{k}.jpg")
    clip = make_video(inp / "clip.mp4", [photo(k, (640, 480)) for k in range(3)], seconds=3, size=(1280, 720))
    p = subprocess.Popen([sys.executable, str(ROOT / "cluster.py"), "-i", str(inp), "-o", str(tmp_path / "o"), "-a",
                          "phash_8", "-j", "2", "--no-report", "--no-cache", "-q"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with _killing_whoever_opens(clip, p.pid) as kills:
        out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert len(kills) >= 2, kills
    rows = list(csv.reader((tmp_path / "o" / "errors.csv").open()))
    assert rows[1:] == [[str(clip), "the decoder died (killed by signal 9) on this file: likely out of memory; "
                                    "it was skipped"]]
    targets = {os.readlink(x) for x in (tmp_path / "o" / "phash_8").rglob("*") if x.is_symlink()}
    assert len(targets) == 5


def test_a_file_that_kills_its_thumbnail_worker_costs_only_its_thumbnail(many, tmp_path):
    """A killed thumbnail worker broke the report's pool: "mhc failed unexpectedly:
    BrokenProcessPool", exit 70. The hashes come from the cache here, so every process
    that opens the file is one making thumbnails: the file gets none (and a warning), the
    others all do."""
    killer = many / "p07.png"
    save(photo(7, (3000, 2400)), killer)  # open long enough to be seen
    cache = tmp_path / "c.sqlite"
    assert run_cli("-i", str(many), "-o", str(tmp_path / "warm"), "--cache", str(cache), "-a", "phash_8", "-t", "0",
                   "--no-report", "-q").returncode == 0
    p = subprocess.Popen([sys.executable, str(ROOT / "cluster.py"), "-i", str(many), "-o", str(tmp_path / "o"), "-a",
                          "phash_8", "-t", "0", "-j", "2", "--cache", str(cache), "-q"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with _killing_whoever_opens(killer, p.pid) as kills:
        out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert len(kills) >= 2, kills  # in the pool, again in a new pool or alone
    assert f"no thumbnail for {killer}: the process making it died (killed by signal 9)" in err
    thumbs = list((tmp_path / "o" / ".mhc" / "thumbs").iterdir())
    assert len(thumbs) == 59 and not any(t.name.endswith(".tmp") for t in thumbs)
    page = (tmp_path / "o" / "report" / "phash_8" / "thr_000.html").read_text()
    assert page.count("no preview") == 1


def test_a_pool_that_broke_before_a_batch_was_handed_to_it_is_replaced(tmp_path):
    """A worker killed right after the pool started (or while results were being taken)
    made the pool refuse the next batch: "mhc failed unexpectedly: BrokenProcessPool",
    exit 70. Here the hashing loop is handed a pool already broken by kill -9."""
    from concurrent.futures.process import BrokenProcessPool

    from mhc import HashPlan, parse_algorithms
    from mhc.pool import local_executor
    from mhc.runner import run_batches

    items = [(str(save(photo(i, (200, 150)), tmp_path / f"p{i:02d}.jpg")), "image") for i in range(30)]
    ex = local_executor(2)
    ex.submit(os.getpid).result()  # its workers have started
    for proc in list(ex._processes.values()):
        proc.kill()
    end = time.monotonic() + 20
    with pytest.raises(BrokenProcessPool):  # once the pool has noticed, it refuses every batch
        while time.monotonic() < end:
            ex.submit(os.getpid)
            time.sleep(0.05)
    results = list(run_batches(items, HashPlan.build(parse_algorithms(["phash_8"])), 2, ex))
    assert sorted(r.path for r in results) == sorted(p for p, _ in items)
    assert all(r.error is None and r.values for r in results)


def _other_mhc() -> None:  # a pool worker's initializer: this process runs "another" mhc
    import mhc
    mhc.__version__ = "0.0.1"


def test_an_executor_whose_workers_run_another_mhc_hashes_nothing_into_the_cache(photos, tmp_path):
    """An executor passed to mhc.run() runs processes mhc did not fork (Dask workers, a
    pool started elsewhere): one running another mhc would hash with other code under this
    mhc's cache keys. Each batch checks its worker's code: refused, and nothing cached."""
    from concurrent.futures import ProcessPoolExecutor

    cache = tmp_path / "c.sqlite"
    with ProcessPoolExecutor(2, initializer=_other_mhc) as pool:
        said = (rf"^a hashing process runs another mhc: mhc 0\.0\.1 \(expected {re.escape(mhc.__version__)}\); its "
                rf"hashes would be cached as this mhc's: start the executor's processes with this mhc$")
        with pytest.raises(EnvironmentFault, match=said):
            run(Options(input=photos, output=tmp_path / "o", algorithms=["phash_8"], cache=cache), executor=pool)
    with HashCache(cache) as c:
        assert c.info().hashes == 0
    assert not (tmp_path / "o").exists()
    with ProcessPoolExecutor(2) as pool:  # the same mhc: hashed on it, and cached
        res = run(Options(input=photos, output=tmp_path / "o", algorithms=["phash_8"], cache=cache), executor=pool)
    assert res.stats.decoded == len(res.files) == 6


@pytest.mark.skipif(not shutil.which("prlimit"), reason="needs prlimit (util-linux)")
def test_an_address_space_too_small_to_start_is_one_line_not_a_hang(photos, tmp_path):
    """Under ulimit -v 200 MB importing mhc's libraries spun forever in OpenBLAS' start-up
    (deaf to signals), and lower it failed with a traceback: refused before those imports."""
    limit = ["prlimit", "--as=200000000"]
    renamed = tmp_path / "media-dedupe"  # the console script through a link of another name: still the command
    renamed.symlink_to(Path(sys.executable).parent / "mhc")
    for cmd in ([str(Path(sys.executable).parent / "mhc")], [sys.executable, str(ROOT / "cluster.py")],
                [sys.executable, "-m", "mhc"], [str(renamed)]):
        r = subprocess.run([*limit, *cmd, "-i", str(photos), "-o", str(tmp_path / "o")], capture_output=True,
                           text=True, timeout=60, cwd=ROOT)
        assert r.returncode == 3 and r.stderr == ("Error: mhc needs at least 256 MB of address space, and ulimit -v "
                                                  "allows this process 190 MB; raise the limit (e.g. ulimit -v "
                                                  "unlimited) and run again\n"), (cmd, r.stderr)
    r = subprocess.run([*limit, sys.executable, "-c", "import mhc"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.splitlines()[-1].startswith("ImportError: mhc needs at least 256 MB")
    assert not (tmp_path / "o").exists()


def test_an_image_too_big_for_memory_is_reported_not_crashed_on(tmp_path):
    """The memory guard: a 10000x10000 RGBA PNG (a few kB on disk) under a 1.5 GB address-space limit."""
    from PIL import Image

    inp = tmp_path / "in"
    save(photo(1), inp / "fine.jpg")
    Image.new("RGBA", (10000, 10000), (10, 20, 30, 128)).save(inp / "huge.png")
    r = subprocess.run(["prlimit", "--as=1500000000", sys.executable, str(ROOT / "cluster.py"), "-i", str(inp), "-o",
                        str(tmp_path / "o"), "-a", "phash_8", "--exact", "-j", "1", "--no-report", "-q"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = {row[0]: row[1] for row in csv.reader((tmp_path / "o" / "errors.csv").open())}
    assert "GB of memory to decode" in rows[str(inp / "huge.png")], rows


# 8 ---------------------------------------------------------------------------------------------
def test_folders_of_earlier_runs_follow_the_input(photos, tmp_path):
    out = tmp_path / "out"
    run(Options(input=photos, output=out, algorithms=["phash_8", "dhash_8"], thresholds="0:6:2", workers=1))
    gone = photos / "food" / "g1 small.jpg"
    gone.unlink()
    res = run(Options(input=photos, output=out, algorithms=["phash_8"], thresholds="0:6:2", workers=1),
              background_cleanup=False)
    links = [p for p in (out / "dhash_8").rglob("*") if p.is_symlink()]
    assert links and all(p.exists() for p in links)  # no dangling link: dhash_8 was recomputed
    assert str(gone) not in {os.readlink(p) for p in links}
    assert [a.key for a in res.algorithms if a.carried] == ["dhash_8"]
    index = (out / "index.html").read_text()
    assert "Computed in this run: phash_8." in index and "recomputed from cached hashes for this input: dhash_8" in index


# 9 ---------------------------------------------------------------------------------------------
def test_a_full_disk_while_writing_leaves_the_old_tree(photos, small_disk):
    out = small_disk / "out"
    assert run_cli("-i", str(photos), "-o", str(out), "-a", "phash_8", "-t", "0", "--no-report", "-q").returncode == 0
    before = tree_digest(out)
    fill(small_disk)
    r = run_cli("-i", str(photos), "-o", str(out), "-a", "phash_8", "-a", "dhash_16", "--no-report",
                env={"COLUMNS": "40"})
    assert r.returncode == 3 and "disk is full" in r.stderr, r.stderr
    # the progress bars, then the error: one line, not broken at the 40 columns
    last = r.stderr.splitlines()[-1]
    assert last.startswith("Error: ") and "the previous output is unchanged" in last, r.stderr
    assert "Traceback" not in r.stderr and len([ln for ln in r.stderr.splitlines() if "Error" in ln]) == 1
    assert tree_digest(out) == before and not list(small_disk.glob(".out.mhc-*"))


def test_a_read_only_cache_is_read_with_one_warning(photos, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    ro = tmp_path / "ro"
    _mount(ro, "3m")
    try:
        cache = ro / "c.sqlite"
        run(Options(input=photos, output=tmp_path / "o1", cache=cache, algorithms=["phash_8"], workers=1))
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        r = run_cli("-i", str(photos), "-o", str(tmp_path / "o2"), "--cache", str(cache), "-a", "phash_8", "-a",
                    "dhash_8")
        assert r.returncode == 0, r.stderr
        assert "cannot be written" in r.stderr and r.stderr.count("hash cache") == 1
        assert "6 files found: 6 decoded" in " ".join(r.stdout.split())  # dhash_8 was computed
        assert "hashes computed: dhash_8 for 6 files; from the cache: phash_8" in " ".join(r.stdout.split())
    finally:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)


@pytest.mark.parametrize("case", ["read-only parent", "under a file", "mount point", "long name"])
def test_impossible_outputs_are_refused_before_hashing(photos, tmp_path, case):
    if case in ("read-only parent", "mount point") and os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    (tmp_path / "a file").write_text("x")
    if case == "read-only parent":
        _mount(tmp_path / "ro", "1m", "ro")
        out, code, say = tmp_path / "ro" / "out", 3, "cannot write in"
    elif case == "under a file":
        out, code, say = tmp_path / "a file" / "out", 2, "is a file, not a folder"
    elif case == "mount point":
        _mount(tmp_path / "mnt", "1m")
        out, code, say = tmp_path / "mnt", 2, "is a mount point"
    else:
        out, code, say = tmp_path / ("x" * 245), 2, "the folder name is too long"
    try:
        r = run_cli("-i", str(photos), "-o", str(out), "-a", "phash_8")
        assert r.returncode == code and say in " ".join(r.stderr.split()), r.stderr
        assert "Hashing" not in r.stderr and "Traceback" not in r.stderr
    finally:
        for m in ("ro", "mnt"):
            subprocess.run(["umount", "-l", str(tmp_path / m)], capture_output=True)


@pytest.mark.parametrize("unclustered", ["linked", "--no-unclustered-links"])
def test_copies_the_disk_cannot_hold_are_refused_before_the_first_copy(tmp_path, small_disk, unclustered):
    """--link copy holds each file once per threshold folder: it copied until the disk was
    full, then threw the copies away. (Here the tree is 1.5 times the 3 MB disk: too close
    to refuse before hashing, see the next test.)"""
    inp = tmp_path / "big photos"
    for g in range(4):  # each with a copy, and one alone: unclustered at every threshold
        save(photo(g, (640, 480)), inp / f"p{g}.jpg", quality=95)
        save(photo(g, (640, 480)), inp / f"p{g} copy.jpg", quality=95)
    save(photo(9, (64, 48)), inp / "alone.jpg")
    alone = (inp / "alone.jpg").stat().st_size
    total = sum(p.stat().st_size for p in inp.iterdir())
    folders = max(2, round(4.5 * 2**20 / total))
    need = (total - (alone if unclustered != "linked" else 0)) * folders
    assert 3 * 2**20 < need <= 5.5 * 2**20  # more than the 3 MB disk holds, less than twice
    r = run_cli("-i", str(inp), "-o", str(small_disk / "clusters"), "--cache", str(tmp_path / "c.sqlite"),
                "-a", "phash_8", "-t", f"0:{folders - 1}:1", "--link", "copy",
                *([unclustered] if unclustered != "linked" else []))
    assert r.returncode == 3, r.stderr
    copies = folders * (9 if unclustered == "linked" else 8)
    line = r.stderr.splitlines()[-1]
    assert line.startswith(f"Error: --link copy would copy {need / 2**20:.1f} MB ({copies} copies: each file once per "
                           f"threshold folder) and {small_disk} has "), line
    assert line.endswith(" MB free; use symlinks (the default), fewer thresholds (-t), or --no-unclustered-links")
    assert 2.5 < float(re.search(r"has ([\d.]+) MB free", line).group(1)) <= 3.0  # (less the thumbnails made)
    assert os.listdir(small_disk) == []  # nothing half-copied left behind
    r = run_cli("-q", "-i", str(inp), "-o", str(small_disk / "clusters"), "--cache", str(tmp_path / "c.sqlite"),
                "-a", "phash_8")  # the hashes were kept: the symlinks' run is the advice taken
    assert r.returncode == 0, r.stderr


def test_a_tree_of_copies_far_beyond_the_disk_is_refused_before_hashing(tmp_path, small_disk):
    """Copies of every file in each of 20 threshold folders, over twice the disk: refused
    only after hashing, that was hours lost on a large collection to learn what the file
    sizes said at once."""
    inp = tmp_path / "big photos"
    for g in range(5):
        save(photo(g, (640, 480)), inp / f"p{g}.jpg", quality=95)
    total = sum(p.stat().st_size for p in inp.iterdir())
    assert total * 20 > 2 * 3 * 2**20  # more than twice what the 3 MB disk holds
    cache = tmp_path / "c.sqlite"
    r = run_cli("-i", str(inp), "-o", str(small_disk / "clusters"), "--cache", str(cache), "-a", "phash_8",
                "--link", "copy")
    assert r.returncode == 3, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith(f"Error: --link copy would copy about {total * 20 / 2**20:.1f} MB (5 files once in each "
                           f"of 20 threshold folders) and {small_disk} has "), line
    assert line.endswith("(refused before hashing)") and "Hashing" not in r.stderr, r.stderr
    info = run_cli("cache", "info", "--cache", str(cache))
    assert not cache.exists() or " 0 hashes" in info.stdout, info.stdout  # nothing was hashed
    assert os.listdir(small_disk) == []
    # symlinks (the advice) are not checked: the same run goes through
    r = run_cli("-q", "-i", str(inp), "-o", str(small_disk / "clusters"), "--cache", str(cache), "-a", "phash_8")
    assert r.returncode == 0, r.stderr
    # ... and a rerun into that output as copies is left to the exact check after hashing
    r = run_cli("-i", str(inp), "-o", str(small_disk / "clusters"), "--cache", str(cache), "-a", "phash_8",
                "--link", "copy")
    assert r.returncode == 3 and "(refused before hashing)" not in r.stderr, r.stderr
    assert "copies: each file once per threshold folder" in " ".join(r.stderr.split()), r.stderr


def test_a_dry_run_says_how_much_a_tree_of_copies_would_take(photos, tmp_path):
    """Planning --link copy onto a drive: --dry-run gives the size of the tree and the room."""
    total = sum(p.stat().st_size for p in photos.rglob("*.jpg"))
    r = run_cli("-n", "-i", str(photos), "-o", str(tmp_path / "usb" / "clusters"), "--no-cache", "-a", "phash_8",
                "-t", "0:4:1", "--link", "copy")
    assert r.returncode == 0, r.stderr
    said = " ".join(r.stdout.split())
    assert (f"--link copy: a new output would take {total * 5 / 2**20:.1f} MB (30 copies: each file once per "
            f"threshold folder); {tmp_path} has ") in said, said
    assert not (tmp_path / "usb").exists()


# 10 --------------------------------------------------------------------------------------------
def test_dry_run_creates_nothing_anywhere(photos, tmp_path):
    xdg = tmp_path / "xdg"
    env = {**os.environ, "XDG_CACHE_HOME": str(xdg)}
    r = subprocess.run([sys.executable, str(ROOT / "cluster.py"), "-i", str(photos), "-o",
                        str(tmp_path / "new" / "deep" / "out"), "-a", "phash_8", "-n"], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and "dry run: nothing written" in r.stdout, r.stderr
    assert not (tmp_path / "new").exists() and not xdg.exists()


def test_names_that_are_not_utf8_map_back_from_errors_csv(tmp_path):
    inp = tmp_path / "in"
    save(photo(1), inp / "fine.jpg")
    bad = os.path.join(os.fsencode(inp), b"caf\xe9 broken.jpg")
    with open(bad, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0" + b"\0" * 40)
    run(Options(input=inp, output=tmp_path / "o", algorithms=["phash_8"], workers=1, no_report=True))
    raw = (tmp_path / "o" / "errors.csv").read_bytes()
    assert bad in raw  # the name's own bytes: the row maps back to the file
    with open(tmp_path / "o" / "errors.csv", encoding="utf-8", errors="surrogateescape", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert os.path.exists(os.fsencode(row["path"]))


def test_ctrl_c_while_making_thumbnails_stops_at_once(many, tmp_path):
    cache = tmp_path / "c.sqlite"
    assert run_cli("-i", str(many), "-o", str(tmp_path / "warm"), "--cache", str(cache), "-a", "ahash_8", "-t", "0",
                   "--no-report", "-q").returncode == 0
    for attempt in range(3):  # a stalled test process may miss the ~1 s phase: then try again
        out_dir = tmp_path / f"o{attempt}"
        p = subprocess.Popen([sys.executable, str(ROOT / "cluster.py"), "-i", str(many), "-o", str(out_dir),
                              "--cache", str(cache), "-a", "ahash_8", "-t", "0", "-j", "2"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        thumbs = tmp_path / f".{out_dir.name}.mhc-staging-{p.pid}" / ".mhc" / "thumbs"
        while not thumbs.exists() and p.poll() is None:
            time.sleep(0.005)
        if p.poll() is None:
            break
        p.communicate()
    p.send_signal(signal.SIGINT)
    t = time.monotonic()
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "Interrupted" in err and "Traceback" not in err
    assert time.monotonic() - t < 2.0
    assert not out_dir.exists()


def test_no_free_inodes_is_not_called_a_full_disk(photos, tmp_path):
    """Space left but no inode (a filesystem holding millions of small files, an output of
    many thresholds): the line must say so, since `df` shows free space."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    _mount(disk, "20m", "nr_inodes=24")
    try:
        r = run_cli("-i", str(photos), "-o", str(disk / "out"), "-a", "phash_8", "-t", "0:8:1", "--no-report")
        assert r.returncode == 3, r.stderr
        assert "no free inodes" in r.stderr and "df -i" in r.stderr and "disk is full" not in r.stderr
        assert str(photos) not in r.stderr.replace("\n", "")  # names what could not be written, not a photo
        assert "Traceback" not in r.stderr and len([ln for ln in r.stderr.splitlines() if "Error" in ln]) == 1
        assert not list(disk.glob(".out.mhc-*"))  # no half-written tree left behind
        assert os.statvfs(disk).f_bavail > 0  # the space was there all along
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _mhc(*args: str, stdout=subprocess.PIPE, stderr=subprocess.PIPE, close: int | None = None):
    """./cluster.py with its standard streams where a user's shell would put them: a file,
    /dev/full (a disk that is full), or closed (``>&-``: ``close=1``, ``2>&-``: ``close=2``)."""
    return subprocess.run([sys.executable, str(ROOT / "cluster.py"), *args], stdout=stdout, stderr=stderr,
                          text=True, timeout=300, preexec_fn=(lambda: os.close(close)) if close else None)


def test_a_full_or_closed_standard_output_ends_in_one_line(photos, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "c.sqlite"
    with open("/dev/full", "w") as full:
        r = _mhc("-i", str(photos), "-o", str(out), "--cache", str(cache), stdout=full)
        # the run finished and replaced the output: the line must not say it is unchanged
        assert r.returncode == 3, r.stderr
        assert r.stderr.strip().splitlines()[-1] == (
            f"Error: cannot write to standard output (No space left on device); free space where it goes or "
            f"redirect it elsewhere; the run itself finished; its output is complete: {out}")
        assert json.loads((out / "summary.json").read_text())["counts"]["found"] == 6
        for fmt in ("csv", "json"):
            r = _mhc("pairs", "-o", str(out), "-a", "phash_8", "-t", "10", "-f", fmt, stdout=full)
            assert (r.returncode, r.stderr) == (3, "Error: cannot write to standard output (No space left on "
                                                   "device); free space where it goes or redirect it elsewhere\n")
        r = _mhc("--help", stdout=full)
        assert r.returncode == 3 and r.stderr.startswith("Error: cannot write to standard output")
    # pairs to a closed stdout: refused before hashing (a cache that does not exist stays so)
    r = _mhc("pairs", "-i", str(photos), "--cache", str(tmp_path / "new.sqlite"), "-a", "phash_8", "-t", "10",
             close=1)
    assert (r.returncode, r.stderr) == (2, "Error: standard output is closed (>&-); redirect it to a file or a "
                                           "pipe instead\n")
    assert not (tmp_path / "new.sqlite").exists()
    # the main run's summary is not wanted there (as with -q): the run itself succeeds
    r = _mhc("-i", str(photos), "-o", str(tmp_path / "out2"), "--cache", str(cache), close=1)
    assert r.returncode == 0 and "Error" not in r.stderr and (tmp_path / "out2" / "summary.json").exists()
    for case in ("stderr full", "stderr closed"):  # nowhere to say anything: the exit status still does
        with open("/dev/full", "w") as full:
            kw = {"stderr": full} if case == "stderr full" else {"close": 2}
            ok = _mhc("-i", str(photos), "-o", str(out), "--cache", str(cache), **kw)
            wrong = _mhc("-i", str(tmp_path / "nowhere"), **kw)
        assert (ok.returncode, wrong.returncode) == (0, 2), case
        assert "6 files found" in ok.stdout, case


def test_too_few_file_descriptors_is_one_line_about_the_limit(tmp_path):
    """ulimit -n 10: starting the hashing pool's pipes failed, and the run ended in "mhc
    failed unexpectedly: OSError: [Errno 24] Too many open files" (exit 70, "please report
    it"). It is the machine's limit: one line naming it and what to do, exit 3."""
    import resource

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (10, 10))

    photos = tmp_path / "photos"
    for k in range(40):  # enough for a pool of processes
        save(photo(k, (64, 48)), photos / f"p{k:02d}.jpg")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(ROOT / "cluster.py"), "-i", str(photos), "-o", str(out), "-a", "phash_8",
                        "--no-cache", "-q", "-j", "2"], capture_output=True, text=True, preexec_fn=low_limit,
                       env={**os.environ, "COLUMNS": "200"}, timeout=300)
    assert r.returncode == 3, r.stderr
    assert r.stderr.startswith("Error: too many open files for one process (the limit is 10: ulimit -n)"), r.stderr
    assert len(r.stderr.splitlines()) == 1 and "The previous output is unchanged." in r.stderr
    assert not out.exists()


@pytest.mark.parametrize("limit, given, expected", [(None, None, "unset"), (16 << 30, None, "1"), (16 << 30, "3", "3")])
def test_openblas_keeps_to_one_thread_under_an_address_space_limit(limit, given, expected):
    """Under ulimit -v, OpenBLAS' start-up (at numpy's import) reserves a buffer per core
    and, when that fails, retries forever, deaf to SIGTERM: at ulimit -v 300000 on 2 cores
    `mhc` hung at 100% CPU (on many cores the window reaches gigabytes). With a limit, mhc
    caps it at one thread before numpy loads, unless the user chose a number."""
    import resource

    def limited():
        if limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))

    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if given:
        env["OPENBLAS_NUM_THREADS"] = given
    r = subprocess.run([sys.executable, "-c", "import os, mhc; print(os.environ.get('OPENBLAS_NUM_THREADS', 'unset'))"],
                       capture_output=True, text=True, preexec_fn=limited, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == expected, r.stderr


def test_running_out_of_memory_outside_a_decode_is_one_line(monkeypatch, capsys):
    """A MemoryError, or a thread that cannot start for want of memory, wherever it strikes,
    ended in "mhc failed unexpectedly" (exit 70, "please report it"): it is the machine's
    limit, said in one line with what to do (exit 3)."""
    from mhc import cli

    for exc in (MemoryError(), RuntimeError("can't start new thread")):
        class Broken:
            def main(self, **kw):
                raise exc

        monkeypatch.setattr(cli.typer.main, "get_command", lambda app: Broken())
        monkeypatch.delenv("MHC_DEBUG", raising=False)
        assert cli.main(["-q"]) == 3
        err = " ".join(capsys.readouterr().err.split())
        assert err.startswith("Error: out of memory") and "use fewer --workers (-j 1)" in err, err
        assert "unexpectedly" not in err


@pytest.fixture
def exfat_drive(exfat_disk):
    """A real 64 MB exFAT filesystem (a USB drive's), through FUSE: it holds no symlinks
    (ENOSYS), nor hard links, nor ':' or non-UTF-8 bytes in a name."""
    return exfat_disk.mnt


def test_an_output_on_a_drive_without_symlinks_is_refused_before_hashing_and_copies_work(
        photos, tmp_path, exfat_drive):
    """An exFAT USB drive: symlinks were refused only when the tree was written, after all the
    hashing, as "Function not implemented" and no word of --link copy; with --link copy, a
    name with ':' or bytes that are not UTF-8 failed the whole run."""
    save(photo(0, (200, 150)), photos / "2024-01-01 12:00:00.jpg")
    save(photo(1, (200, 150)), photos / os.fsdecode(b"caf\xe9.jpg"))  # a Latin-1 name
    before = tree_digest(photos)
    cache = tmp_path / "cache.sqlite"
    r = run_cli("-i", str(photos), "-o", str(exfat_drive / "clusters"), "--cache", str(cache), "-a", "phash_8")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == (f"Error: cannot create symlinks in {exfat_drive} (Function not implemented): its "
                                f"filesystem does not hold them; use --link copy, or --link hardlink where it "
                                f"holds hard links and the input is on it")
    assert "Hashing" not in r.stderr and not cache.exists() and os.listdir(exfat_drive) == []
    for _ in range(2):  # made, then replaced
        r = run_cli("-i", str(photos), "-o", str(exfat_drive / "clusters"), "--cache", str(cache), "-a", "phash_8",
                    "--link", "copy", "-q")
        assert r.returncode == 0, r.stderr
    names = {p.name for p in (exfat_drive / "clusters" / "phash_8").glob("thr_000_*/*/*")}
    assert len(names) == 8 and "2024-01-01 12_00_00_" in " ".join(names) and any(n.startswith("caf__") for n in names)
    assert tree_digest(photos) == before
    # a new photo: every folder written anew, the old copies checked first (exFAT keeps their
    # times to 10 ms: still as mhc made them) and removed
    save(photo(7, (200, 150)), photos / "new.jpg")
    r = run_cli("-i", str(photos), "-o", str(exfat_drive / "clusters"), "--cache", str(cache), "-a", "phash_8",
                "--link", "copy", "-q")
    assert r.returncode == 0, r.stderr
    assert len({p.name for p in (exfat_drive / "clusters" / "phash_8").glob("thr_000_*/*/*")}) == 9


def test_hard_links_on_a_drive_without_them_are_refused_before_hashing(tmp_path, exfat_drive):
    """Photos and output on one exFAT drive (--link hardlink's same-filesystem rule holds):
    the drive holds no hard links, which was found only when writing, after the hashing."""
    photos = exfat_drive / "DCIM"
    for k in range(3):
        save(photo(k, (120, 90)), photos / f"IMG_{k}.jpg")
    before = tree_digest(photos)
    cache = tmp_path / "cache.sqlite"
    r = run_cli("-i", str(photos), "-o", str(exfat_drive / "clusters"), "--cache", str(cache), "-a", "phash_8",
                "--link", "hardlink")
    assert r.returncode == 2 and r.stderr.strip() == (
        f"Error: cannot create hard links in {exfat_drive} (Operation not permitted): its filesystem does not hold "
        f"them; use --link copy"), r.stderr
    assert "Hashing" not in r.stderr and not cache.exists()
    assert sorted(os.listdir(exfat_drive)) == ["DCIM"] and tree_digest(photos) == before  # no probe left behind


def _going_away(when_hashing: Callable[[], object]):
    """A progress callback that calls ``when_hashing`` once, at the first file hashed."""
    done = []

    def progress(e):
        if e.stage == "hash" and not done:
            done.append(1)
            when_hashing()
    return progress


def test_an_input_folder_that_goes_away_during_the_run_leaves_the_output_as_it_was(tmp_path):
    """A USB disk unplugged, a share dropped, the folder moved while hashing: every file not
    read yet "disappeared", and the run replaced a whole output with a tree of the rest,
    exit status 0. It stops before writing now, in one line; the rerun, once the folder is
    back, takes what was hashed from the cache. Files deleted one by one are not this."""
    inp, out, cache = tmp_path / "in", tmp_path / "out", tmp_path / "c.sqlite"
    for k in range(24):
        save(photo(k, (200, 150)), inp / f"p{k:02}.jpg")
    o = dict(input=inp, output=out, cache=cache, algorithms=["phash_8"], thresholds="0:8:4", workers=1)
    run(Options(**o))
    before = tree_digest(out)

    def move_away():
        inp.rename(tmp_path / "moved")
        inp.mkdir()
    with pytest.raises(EnvironmentFault) as e:
        run(Options(**{**o, "algorithms": ["phash_8", "dhash_8"]}), progress=_going_away(move_away),
            background_cleanup=False)
    m = re.fullmatch(rf"the input folder {re.escape(str(inp))} was unmounted, moved or replaced during the run "
                     r"\((\d+) file\(s\) could not be read after it went\); the previous output is unchanged and "
                     r"the hashes computed are kept in the cache: run again once it is back", str(e.value))
    assert m and 0 < int(m[1]) <= 24, str(e.value)
    assert tree_digest(out) == before
    inp.rmdir()
    (tmp_path / "moved").rename(inp)
    assert run(Options(**{**o, "algorithms": ["phash_8", "dhash_8"]})).stats.decoded == int(m[1])
    # the library's hash_folder (mhc pairs, mhc hydrus push) refuses the same way
    with pytest.raises(EnvironmentFault, match=r"\(\d+ file\(s\) could not be read after it went\); the files read "
                       r"were not used: run again once it is back$"):
        mhc.hash_folder(inp, ["ahash_8"], no_cache=True, workers=1, progress=_going_away(move_away))
    inp.rmdir()
    (tmp_path / "moved").rename(inp)
    # files deleted during the run (the folder stays): the run goes on without them, as before
    gone = [inp / "p03.jpg", inp / "p20.jpg"]
    res = run(Options(**{**o, "algorithms": ["ahash_8"]}), progress=_going_away(lambda: [p.unlink() for p in gone]))
    assert {str(p) for p in gone} <= {f.path for f in res.collection.errors}
    assert len(res.files) == 22


@pytest.mark.parametrize("disk", ["loop_disk", "exfat_disk"])
def test_a_disk_unmounted_inside_the_input_during_the_run_leaves_the_output_as_it_was(request, tmp_path, disk):
    """The same for a disk mounted inside the input (-i /media/me, the USB disk at
    /media/me/USB): the input folder stays, the disk's folder is another (empty) one. (On
    exFAT, through FUSE, folders' inode numbers are made up: the device number tells.)"""
    loop_disk = request.getfixturevalue(disk)
    inp, out = loop_disk.mnt.parent, tmp_path / "out"
    for k in range(24):
        save(photo(k, (200, 150)), loop_disk.mnt / f"p{k:02}.jpg")
    save(photo(99, (200, 150)), inp / "beside.jpg")
    o = dict(input=inp, output=out, algorithms=["phash_8"], thresholds="0:8:4", workers=1, no_cache=True)
    run(Options(**o))
    before = tree_digest(out)
    unmount = lambda: subprocess.run(["umount", "-l", str(loop_disk.mnt)], check=True)  # (-l: files open stay open)
    with pytest.raises(EnvironmentFault, match=rf"^the disk mounted at {re.escape(str(loop_disk.mnt))} was unmounted, "
                       r"moved or replaced during the run \(\d+ file\(s\) could not be read after it went\); the "
                       r"previous output is unchanged: run again once it is back$"):
        run(Options(**{**o, "algorithms": ["dhash_8"]}), progress=_going_away(unmount), background_cleanup=False)
    assert tree_digest(out) == before


def test_a_disk_whose_fuse_driver_dies_during_the_run_leaves_the_output_as_it_was(exfat_disk, tmp_path):
    """A FUSE filesystem (exFAT or NTFS on Linux, sshfs, a cloud drive) whose driver is killed
    stays mounted, and every read there fails "Transport endpoint is not connected": its files
    are not gone, only unreadable, and the run wrote a tree of the others, exit 0. The disk
    check sees the mount no longer answers; images and videos alike."""
    inp, out, cache = exfat_disk.mnt.parent, tmp_path / "out", tmp_path / "c.sqlite"
    for k in range(12):
        save(photo(k, (200, 150)), exfat_disk.mnt / f"p{k:02}.jpg")
    make_video(exfat_disk.mnt / "zz.mp4", [photo(k, (160, 120)) for k in range(3)])
    save(photo(99, (200, 150)), inp / "beside.jpg")
    o = dict(input=inp, output=out, cache=cache, algorithms=["phash_8"], thresholds="0:8:4", workers=1)
    assert len(run(Options(**o)).files) == 14
    before = tree_digest(out)
    with pytest.raises(EnvironmentFault) as e:
        run(Options(**{**o, "algorithms": ["dhash_8"]}), progress=_going_away(exfat_disk.kill_driver),
            background_cleanup=False)
    m = re.fullmatch(rf"the disk mounted at {re.escape(str(exfat_disk.mnt))} stopped answering \(Transport endpoint "
                     r"is not connected\) during the run \((\d+) file\(s\) could not be read after it went\); the "
                     r"previous output is unchanged and the hashes computed are kept in the cache: run again once it "
                     r"is back", str(e.value))
    assert m and 0 < int(m[1]) <= 13, str(e.value)
    assert tree_digest(out) == before
    with contextlib.closing(sqlite3.connect(cache)) as db:  # no read through the dead mount kept as a failure
        assert db.execute("SELECT count(*) FROM failures").fetchone()[0] == 0


def test_a_video_whose_disk_dies_while_it_is_decoded_is_not_cached_as_damaged(exfat_disk, monkeypatch):
    """FFmpeg reports a read that failed mid-packet as "invalid data", which the sampler takes as
    a damaged stretch: a video whose FUSE driver died while it was decoded was cached as a
    damaged video (or hashed from the frames read before). The real decoder on a real FUSE
    mount; only the moment of the kill is hooked (after the first frame decoded)."""
    import av

    from mhc.decode import DecodeError
    from mhc.video import VideoSettings, sample_frames

    clip = make_video(exfat_disk.mnt / "clip.mp4", [photo(k, (320, 240)) for k in range(6)], seconds=3,
                      bitrate=4_000_000, gop=8)
    exfat_disk.remount()  # (nothing of it left in the page cache: the reads go to the driver)
    real_open, killed = av.open, []

    class Dying:
        def __init__(self, container):
            self.c = container

        def __getattr__(self, name):
            return getattr(self.c, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.c.__exit__(*exc)

        def decode(self, *a, **kw):
            for frame in self.c.decode(*a, **kw):
                if not killed:
                    killed.append(exfat_disk.kill_driver())
                yield frame

    monkeypatch.setattr(av, "open", lambda *a, **kw: Dying(real_open(*a, **kw)))
    with pytest.raises(DecodeError) as e:
        sample_frames(str(clip), VideoSettings())
    assert str(e.value) == "cannot read file (Transport endpoint is not connected)" and not e.value.cacheable


def test_an_output_disk_whose_fuse_driver_dies_during_the_writing_keeps_the_previous_output(exfat_disk, tmp_path):
    """The output on a FUSE disk (an exFAT USB drive on Linux) whose driver dies while the new
    tree is written: every call there fails "Transport endpoint is not connected", which ended
    in "mhc failed unexpectedly ... please report it" (exit 70) when it met the report's pages.
    Now one line, exit 3, and once the disk is mounted again the previous output is whole and
    the rerun clears what the dead run left (its staging folder)."""
    inp, out = tmp_path / "in", exfat_disk.mnt / "out"
    for k in range(8):
        save(photo(k % 5, (200, 150)), inp / f"p{k}.jpg")
    o = dict(input=inp, output=out, cache=tmp_path / "c.sqlite", algorithms=["phash_8"], thresholds="0:8:4",
             link="copy", workers=1)
    run(Options(**o))
    before = tree_digest(out)
    killed = []

    def kill_while_writing(e):
        if e.stage in ("write", "thumbnails") and not killed:
            killed.append(exfat_disk.kill_driver())
    with pytest.raises(EnvironmentFault) as e:
        run(Options(**{**o, "algorithms": ["dhash_8"]}), progress=kill_while_writing, background_cleanup=False)
    # (ECONNABORTED for the calls the driver was serving when it died, ENOTCONN after)
    assert e.value.exit_code == 3 and re.search(r"stopped answering.* \((Transport endpoint is not connected|Software "
                                                r"caused connection abort)\); check it", str(e.value)) \
        and "\n" not in str(e.value), str(e.value)
    exfat_disk.remount()
    assert tree_digest(out) == before
    run(Options(**{**o, "algorithms": ["dhash_8"]}), background_cleanup=False)
    assert sorted(os.listdir(exfat_disk.mnt)) == ["out"]
    assert {"phash_8", "dhash_8"} <= set(os.listdir(out))


def test_a_disk_that_stopped_answering_before_the_command_is_named_in_one_line(exfat_disk, tmp_path):
    """A FUSE disk whose driver is dead before mhc starts, as the input, the output or the cache,
    under `mhc cache info`, and holding an output for `mhc report` and `mhc pairs`: each one
    line naming the mount point (the path that failed
    first may be a marker file mhc looked for), exit status 3; "mhc failed unexpectedly"
    before."""
    inp = tmp_path / "in"
    save(photo(1), inp / "a.jpg")
    mnt = str(exfat_disk.mnt)
    assert run_cli("-i", str(inp), "-o", mnt + "/made", "--link", "copy", "--no-cache", "-q").returncode == 0
    exfat_disk.kill_driver()
    line = (rf"Error: the disk or network share mounted at {re.escape(mnt)} stopped answering \(Transport endpoint is "
            r"not connected\); check it \(plug it in or mount it again\) and run again")
    for args, unchanged in ((["-i", mnt, "-o", str(tmp_path / "out")], True),
                            (["-i", str(inp), "-o", mnt + "/out", "--link", "copy"], True),
                            (["-i", str(inp), "-o", str(tmp_path / "out"), "--cache", mnt + "/c.sqlite"], True),
                            (["cache", "info", "--cache", mnt + "/c.sqlite"], False),
                            # an output there, read by `mhc report` and `mhc pairs` ("cannot read its
                            # summary.json ...; make it readable" before)
                            (["report", "-o", mnt + "/made"], False), (["pairs", "-o", mnt + "/made"], False)):
        r = run_cli(*args, "-q") if args[0] not in ("cache", "report", "pairs") else run_cli(*args)
        assert r.returncode == 3 and re.fullmatch(line + (r"\. The previous output is unchanged\." if unchanged else
                                                          r"\.?"), r.stderr.strip()), (args, r.stderr)
    assert not (tmp_path / "out").exists()


def test_the_line_for_a_disk_that_stopped_answering_names_its_mount_point_as_written(tmp_path):
    """The mount point comes from /proc/self/mounts, where a space is written \\040: a real
    mount at a path with a space and non-ASCII letters, and the error a dead mount gives."""
    import errno

    from mhc.errors import resource_fault

    if os.geteuid() != 0 or not os.path.exists("/proc/self/mounts"):
        pytest.skip("needs root and /proc/self/mounts")
    point = tmp_path / "USB disk é"
    point.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(point)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        e = OSError(errno.ENOTCONN, "Transport endpoint is not connected", str(point / "DCIM" / "a.jpg"))
        assert str(resource_fault(e)) == (f"the disk or network share mounted at {point} stopped answering (Transport "
                                          f"endpoint is not connected); check it (plug it in or mount it again) and run "
                                          f"again")
        e = OSError(errno.EIO, "Input/output error", str(tmp_path / "elsewhere.jpg"))  # under no mount of its own
        assert f"share at {tmp_path / 'elsewhere.jpg'} reports read errors" in str(resource_fault(e)) or \
            "mounted at /" in str(resource_fault(e))
    finally:
        subprocess.run(["umount", str(point)], check=True)
