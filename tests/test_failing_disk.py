"""A disk that answers with I/O errors (a failing disk, a USB disk half unplugged): real EIO
from the kernel (``failing_disk``: an ext4 disk whose blocks stop being served), never a
mocked one. Its files are not bad files: the line says the disk, the exit status says that
part of the work failed, and a run that could read nothing keeps the last good output."""
from __future__ import annotations

import csv
import json
import re

import pytest

from mhc import EnvironmentFault, Options, run

from conftest import make_video, photo, run_cli, save, tree_digest


def _photos(folder, n: int = 12) -> list:
    (folder / "sub").mkdir()
    files = [save(photo(k, (200, 150)), folder / ("sub" if k % 2 else "") / f"p{k:02}.jpg") for k in range(n)]
    files.append(make_video(folder / "clip.mp4", [photo(k, (160, 120)) for k in range(3)]))
    return sorted(files)


def test_files_the_disk_fails_are_said_as_the_disk_s_fault_with_exit_status_1(failing_disk, tmp_path):
    """Half the files were read before the disk failed: the run clusters them and lists the
    others in errors.csv, as it did; the others are no longer passed over as bad files with
    exit status 0: a line says their disk reported errors, and the exit status is 1."""
    files = _photos(failing_disk.mnt)
    read = tuple(p for p in files if p.suffix == ".jpg")[:6]
    failed = [p for p in files if p not in read]
    failing_disk.fail(read=read)
    out = tmp_path / "out"
    r = run_cli("-i", str(failing_disk.mnt), "-o", str(out), "--no-cache", "-a", "phash_8", "-t", "0:8:4", "-j", "1")
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert re.search(r"^  7 of them because their disk reported errors \(see dmesg\): it may be failing, so copy what "
                     r"can be read off it; the next run tries them again \(exit status 1\)$", r.stdout, re.M), r.stdout
    with open(out / "errors.csv", newline="") as f:
        rows = {row["path"]: row["reason"] for row in csv.DictReader(f)}
    assert rows == {str(p): "cannot read file (Input/output error)" for p in failed}
    assert any(p.name == "clip.mp4" for p in failed)  # videos as images
    linked = {p.resolve() for p in (out / "phash_8").rglob("*.jpg")}
    assert {p.resolve() for p in read} <= linked

    quiet = run_cli("-i", str(failing_disk.mnt), "-o", str(out), "--no-cache", "-a", "phash_8", "-t", "0:8:4", "-q")
    assert quiet.returncode == 1 and quiet.stdout == "", (quiet.returncode, quiet.stdout)
    assert re.fullmatch(r"7 file\(s\) could not be read because their disk reported errors \(e\.g\. \S+: cannot read "
                        r"file \(Input/output error\); see dmesg\): .*\(exit status 1\)\n", quiet.stderr), quiet.stderr

    pairs = run_cli("pairs", "-i", str(failing_disk.mnt), "--cache", str(tmp_path / "c.sqlite"), "-a", "phash_8",
                    "-t", "4")
    assert pairs.returncode == 1 and pairs.stdout.startswith("path_a,path_b,distance\n"), pairs
    assert "mhc pairs: 7 of them because their disk reported errors" in pairs.stderr, pairs.stderr


def test_a_disk_that_fails_every_read_keeps_the_last_good_output(failing_disk, tmp_path):
    """Its folders still list (cached) but not one file can be read: the run wrote a tree of
    nothing over the last good output, exit status 0. Now one line, exit status 3, and the
    output as it was."""
    files = _photos(failing_disk.mnt)
    out = tmp_path / "out"
    o = dict(input=failing_disk.mnt, output=out, no_cache=True, algorithms=["phash_8"], thresholds="0:8:4")
    assert len(run(Options(**o), background_cleanup=False).files) == len(files)
    before = tree_digest(out)
    failing_disk.fail()
    r = run_cli("-i", str(failing_disk.mnt), "-o", str(out), "--no-cache", "-a", "phash_8", "-t", "0:8:4")
    assert r.returncode == 3 and len(r.stderr.strip().splitlines()) >= 1, (r.returncode, r.stderr)
    line = r.stderr.strip().splitlines()[-1]
    mnt = re.escape(str(failing_disk.mnt))
    assert re.fullmatch(rf"Error: none of the files could be read: the disk mounted at {mnt} "
                        rf"reports errors \({len(files)} file\(s\), e\.g\. \S+: cannot read file \(Input/output error\); "
                        r"see dmesg\): it is failing, or was unplugged or disconnected; plug it in or connect it "
                        r"again, or copy what can still be read off it \(ddrescue, or a file copy\) and run mhc on the copy "
                        r"\(the previous output is unchanged\)", line), line
    assert tree_digest(out) == before
    with pytest.raises(EnvironmentFault, match="none of the files could be read.*nothing was used"):
        from mhc import hash_folder

        hash_folder(failing_disk.mnt, "phash_8", no_cache=True)


def test_a_disk_whose_folders_cannot_be_read_is_not_told_to_wait_until_it_is_back(failing_disk, tmp_path):
    """Nothing of it cached: listing the input fails with EIO. The line said the disk
    "stopped answering" and to run again "once it is back", advice that never helps a disk
    that is failing; it now says it reports read errors, and what to do either way."""
    _photos(failing_disk.mnt, 4)
    failing_disk.fail(listed=False)
    out = tmp_path / "out"
    r = run_cli("-i", str(failing_disk.mnt / "sub"), "-o", str(out), "--no-cache", "-a", "phash_8")
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert r.stderr.strip().splitlines()[-1] == (
        f"Error: the disk or network share mounted at {failing_disk.mnt} reports read errors (Input/output error; "
        f"see dmesg): it is failing, or was unplugged or disconnected; plug it in or connect it again, or, if it is "
        f"failing, copy what can still be read off it (ddrescue, or a file copy) and work from the copy. The previous "
        f"output is unchanged."), r.stderr
    assert not out.exists()


def test_a_disk_that_fails_during_the_run_is_said_to_report_read_errors(failing_disk, tmp_path):
    """The disk fails while its files are being hashed, and then its folders cannot be listed
    either: the run stops before writing (as for a disk unplugged), and the line says the
    disk reported read errors, not to wait "until it is back"."""
    from test_faults import _going_away

    _photos(failing_disk.mnt)
    out, cache = tmp_path / "out", tmp_path / "c.sqlite"
    o = dict(input=failing_disk.mnt, output=out, cache=cache, algorithms=["phash_8"], thresholds="0:8:4", workers=1)
    failing_disk.remount()
    with pytest.raises(EnvironmentFault) as e:
        run(Options(**o), progress=_going_away(failing_disk.fail_now), background_cleanup=False)
    assert not out.exists()
    m = re.fullmatch(rf"the input folder {re.escape(str(failing_disk.mnt))} reported read errors \(Input/output error; "
                     r"see dmesg\) during the run \((\d+) file\(s\) could not be read after it went\): it is failing, "
                     r"or was unplugged or disconnected; .* \(the previous output is unchanged and the hashes "
                     r"computed are kept in the cache\)", str(e.value))
    assert m, str(e.value)


def test_a_cache_on_a_failing_disk_is_not_called_another_program_s_file(failing_disk, tmp_path):
    """The cache's own disk fails: its first bytes cannot be read, and mhc said "--cache X is
    not an mhc cache ... (or, if it is a damaged mhc cache, delete it yourself)", exit 2,
    inviting the user to delete a good cache. It says the file cannot be read, and why."""
    inp, cache = tmp_path / "in", failing_disk.mnt / "c.sqlite"
    for k in range(3):
        save(photo(k, (200, 150)), inp / f"p{k}.jpg")
    assert run_cli("-i", str(inp), "-o", str(tmp_path / "out"), "--cache", str(cache), "-a", "phash_8",
                   "-q").returncode == 0
    failing_disk.fail()
    for args, then in ((["-i", str(inp), "-o", str(tmp_path / "out")], "choose another path, or --no-cache"),
                       (["cache", "info"], "choose another path")):
        r = run_cli(*args, "--cache", str(cache))
        assert r.returncode == 3, (args, r.returncode, r.stderr)
        assert r.stderr == (f"Error: --cache {cache} cannot be read (Input/output error; see dmesg: its disk is "
                            f"failing, or was unplugged or disconnected); {then}\n"), r.stderr
    assert cache.exists() and not list(cache.parent.glob("*corrupt*"))  # not set aside as a damaged one


def test_a_cache_the_user_may_not_read_is_said_so(tmp_path):
    """mhc.toml names a cache of another user (mode 600, or chmod 0): it was "not an mhc cache
    ... delete it yourself", exit 2. Now: it cannot be read (permission denied), exit 2. (On
    the command line, click already says "--cache ... is not readable".)"""
    import subprocess
    import sys

    from conftest import ROOT, unprivileged

    inp, cache = tmp_path / "in", tmp_path / "c.sqlite"
    save(photo(1), inp / "a.jpg")
    assert run_cli("-i", str(inp), "-o", str(tmp_path / "out"), "--cache", str(cache), "-a", "phash_8",
                   "-q").returncode == 0
    (tmp_path / "mhc.toml").write_text(f'cache = "{cache}"\n')
    cmd = unprivileged([sys.executable, str(ROOT / "cluster.py"), "-i", str(inp), "-o", str(tmp_path / "out2"), "-a",
                        "phash_8", "-q"])
    cache.chmod(0)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    finally:
        cache.chmod(0o644)
    said = f"Error: --cache {cache} cannot be read (permission denied); choose another path, or --no-cache (set in " \
        f"{tmp_path / 'mhc.toml'})\n"
    assert (r.returncode, r.stderr) == (2, said)


def test_a_hydrus_push_from_a_failing_disk_sends_what_it_read_and_exits_1(failing_disk, tmp_path):
    """The pairs of the files read are sent; those of the files the disk failed are not, and
    the exit status says the push is not whole (the strict fake of the Client API)."""
    from test_hydrus import KEY, client_holding, received, sha

    inp = failing_disk.mnt / "photos"
    for g in range(3):
        base = photo(200 + g, (240, 180))
        save(base, inp / f"g{g}.jpg", quality=92)
        save(base, inp / f"g{g} recompressed.jpg", quality=50)
    read = (inp / "g0.jpg", inp / "g0 recompressed.jpg", inp / "g1.jpg")
    with client_holding(inp) as hub:
        failing_disk.fail(read=read)
        r = run_cli("hydrus", "push", "-a", "phash_8", "-t", "8", "-i", str(inp), "--cache",
                    str(tmp_path / "c.sqlite"), "--api-url", hub.url, "--api-key", KEY)
        assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
        assert "3 of them because their disk reported errors (see dmesg)" in r.stdout, r.stdout
        assert received(hub) == [tuple(sorted((sha(read[0]), sha(read[1]))))]


def test_a_cache_whose_disk_fails_during_the_run_costs_only_its_saving(failing_disk, tmp_path, caplog):
    """The cache's disk fails while hashes are being saved: the run goes on and clusters every
    file, and the warning sends the user to the disk, not to free space or permissions."""
    from test_faults import _going_away

    inp, cache = tmp_path / "in", failing_disk.mnt / "c.sqlite"
    for k in range(40):
        save(photo(k, (200, 150)), inp / f"p{k:02}.jpg")
    o = dict(input=inp, output=tmp_path / "out", cache=cache, algorithms=["phash_8"], thresholds="0:8:4", workers=1)
    run(Options(**{**o, "algorithms": ["dhash_8"]}))  # (the cache made, with other hashes)
    failing_disk.remount()
    result = run(Options(**o), progress=_going_away(failing_disk.fail_now), background_cleanup=False)
    assert len(result.files) == 40 and not result.errors
    said = [r.getMessage() for r in caplog.records if "hash cache" in r.getMessage()]
    assert len(said) == 1 and re.fullmatch(
        rf"the hash cache {re.escape(str(cache))} cannot be written \(disk I/O error\); this run goes on without "
        r"saving new hashes: check its disk \(see dmesg\) or choose another --cache, then run again", said[0]), said


@pytest.mark.parametrize("n", [5, 30])  # thumbnails made in mhc's process, and in a pool
def test_files_hashed_from_the_cache_that_cannot_be_read_now_are_said_to_have_no_thumbnail(failing_disk, tmp_path,
                                                                                           n):
    """Their hashes come from the cache, so the run clusters them; their thumbnails for a new
    output cannot be made from a disk that fails. The report showed "no preview" for each,
    and nothing said why; now one line does."""
    import shutil

    inp, cache = failing_disk.mnt / "photos", tmp_path / "c.sqlite"
    for k in range(n):
        save(photo(k, (200, 150)), inp / f"p{k:02}.jpg")
    assert run_cli("-i", str(inp), "-o", str(tmp_path / "first"), "--cache", str(cache), "-a", "phash_8",
                   "-q").returncode == 0
    shutil.rmtree(tmp_path / "first")  # (no other output to take thumbnails from)
    failing_disk.fail()
    r = run_cli("-i", str(inp), "-o", str(tmp_path / "out"), "--cache", str(cache), "-a", "phash_8", "-q")
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(rf'{n} file\(s\) have no thumbnail \(the report shows "no preview"\), e\.g\. '
                        rf'{re.escape(str(inp))}/p\d\d\.jpg: cannot read file \(Input/output error\)\n', r.stderr), \
        r.stderr
    assert not list((tmp_path / "out" / ".mhc" / "thumbs").glob("*.jpg"))


def test_a_write_that_the_disk_fails_is_worded_for_a_disk_and_a_share():
    """sshfs answers EIO to a write once its connection is gone, and a failing disk does too:
    "the disk stopped answering ... (plug it in or mount it again)" named neither a failing
    disk nor a share. (The text alone: a real write EIO needs such a share; the write-back
    failures of a real disk are tested in test_durability.)"""
    import errno

    from mhc.errors import fault, resource_fault

    e = OSError(errno.EIO, "Input/output error", "/mnt/share/out/phash_8")
    assert str(fault(e, "cannot write the output")) == (
        "cannot write the output: the disk or network share reports write errors (Input/output error; see dmesg): "
        "it is failing, or was unplugged or disconnected; choose another --output, or plug it in or connect it "
        "again, and run again (the previous output is unchanged)")
    e = OSError(errno.ENOTCONN, "Transport endpoint is not connected", "/mnt/share/out/phash_8")
    assert "stopped answering" in str(fault(e, "cannot write the output"))  # (a FUSE driver gone: as before)
    assert "stopped answering" in str(resource_fault(e))


def test_a_cache_whose_disk_fails_some_reads_is_not_moved_aside_as_damaged(failing_disk, tmp_path):
    """Its first page readable, the rest on blocks the disk now fails: SQLite reads short
    pages and says "database disk image is malformed", and mhc moved the cache aside as
    damaged (taking the user's "not a duplicate" marks with it) and started a new one on the
    same failing disk. It is the disk: the cache is left as it is, the run goes on in memory."""
    from conftest import drop_cached

    inp, cache = tmp_path / "in", failing_disk.mnt / "c.sqlite"
    for k in range(40):
        save(photo(k, (200, 150)), inp / f"p{k:02}.jpg")
    args = ["-i", str(inp), "--cache", str(cache), "-a", "phash_8,dhash_8,ahash_8,whash_8"]
    assert run_cli(*args, "-o", str(tmp_path / "first"), "--crops", "-q").returncode == 0  # (a cache of many pages)
    assert run_cli("ignore", str(inp / "p00.jpg"), str(inp / "p01.jpg"), "--cache", str(cache)).returncode == 0
    failing_disk.remount()
    with open(cache, "rb") as f:  # its first page in the kernel's cache, nothing else
        f.read(4096)
    drop_cached(failing_disk.img)
    drop_cached(cache, 4096)
    failing_disk.outer.kill_driver()
    r = run_cli(*args, "-o", str(tmp_path / "out"), "-q")
    assert r.returncode == 0, r.stderr
    assert r.stderr == (f"the hash cache {cache} cannot be read (Input/output error; see dmesg: its disk is failing, "
                        f"or was unplugged or disconnected); it is left as it is and this run keeps hashes in memory "
                        f"only: check the disk, or choose another --cache\n"), r.stderr
    assert not list(cache.parent.glob("*corrupt*"))
    assert len(json.loads((tmp_path / "out" / "summary.json").read_text())["files"]) == 40
