"""The hash cache: reruns only compute what is missing, and survive damage."""
from __future__ import annotations

import dataclasses
import os
import shutil
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest

from mhc import HashCache, HashPlan, Options, compute_hashes, discover, parse_algorithms, run

from conftest import photo, run_cli, save, tree_digest


def opts(corpus: Path, tmp: Path, algos=("phash_8",), **kw) -> Options:
    return Options(input=corpus, output=tmp / "out", cache=tmp / "cache.sqlite", algorithms=list(algos), workers=1, **kw)


def test_rerun_hashes_nothing_and_opens_no_media_file(corpus, tmp_path):
    first = run(opts(corpus, tmp_path))
    assert first.stats.decoded == len(first.files) and first.stats.cached == 0
    # Python's audit hook sees every open() of this process (workers=1 hashes in-process;
    # a pool would be started, and seen, by "os.fork"/"subprocess" events instead)
    media = {str(p) for p in corpus.rglob("*") if p.is_file()}
    opened: list[str] = []
    watching = [True]

    def hook(event, args):
        if watching[0] and event in ("open", "os.fork", "subprocess.Popen"):
            opened.append(str(args[0]) if args else event)

    sys.addaudithook(hook)
    try:
        again = run(opts(corpus, tmp_path, no_report=True))
    finally:
        watching[0] = False
    assert again.stats.decoded == 0
    assert again.stats.cached == len(first.files)
    assert again.stats.failed == 1  # the corrupt file: its failure is cached, it is not decoded again
    assert [e.path for e in again.errors] == [e.path for e in first.errors]
    assert not media & set(opened), sorted(media & set(opened))
    assert [p.clusters for p in again.algorithms[0].partitions].__repr__() == \
        [p.clusters for p in first.algorithms[0].partitions].__repr__()


def test_touching_one_file_rehashes_only_it(corpus, tmp_path):
    run(opts(corpus, tmp_path))
    target = corpus / "group1" / "small.jpg"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    again = run(opts(corpus, tmp_path))
    assert again.stats.decoded == 1
    # and a changed picture gets its new hash
    save(photo(4242), target)
    third = run(opts(corpus, tmp_path))
    assert third.stats.decoded == 1
    i = third.files.index(str(target))
    assert third.algorithms[0].hexes[i] != again.algorithms[0].hexes[i]


def test_adding_an_algorithm_computes_only_it(corpus, tmp_path):
    run(opts(corpus, tmp_path, ("phash_8",)))
    # Plant a sentinel in the cached phash_8 rows: if phash_8 were recomputed, it would vanish.
    db = sqlite3.connect(tmp_path / "cache.sqlite")
    sentinel = bytes.fromhex("0123456789abcdef")
    n = db.execute("UPDATE hashes SET value = ? WHERE hkey LIKE 'phash_8|%'", (sentinel,)).rowcount
    db.commit()
    db.close()
    assert n > 0
    both = run(opts(corpus, tmp_path, ("phash_8", "dhash_8")))
    assert both.stats.decoded == len(both.files)  # each file decoded once, for dhash_8
    ph = next(a for a in both.algorithms if a.algorithm.key == "phash_8")
    assert set(ph.hexes) == {"0123456789abcdef"}
    dh = next(a for a in both.algorithms if a.algorithm.key == "dhash_8")
    assert len(set(dh.hexes)) > 4
    with HashCache(tmp_path / "cache.sqlite") as c:
        keys = c.info().keys
    assert sorted(k.split("|")[0] for k in keys) == ["dhash_8", "phash_8"]


def test_deleted_file_disappears_from_output_and_cache(corpus, tmp_path):
    run(opts(corpus, tmp_path))
    gone = corpus / "group2" / "small.jpg"
    gone.unlink()
    res = run(opts(corpus, tmp_path))
    assert str(gone) not in res.files
    links = [os.readlink(p) for p in (tmp_path / "out").rglob("*") if p.is_symlink()]
    assert links and str(gone) not in links
    db = sqlite3.connect(tmp_path / "cache.sqlite")
    paths = {bytes(r[0]) for r in db.execute("SELECT path FROM hashes")}
    assert os.fsencode(str(gone)) not in paths and len(paths) == len(res.files)


def test_damaged_cache_of_mhc_is_set_aside_and_rebuilt(corpus, tmp_path, caplog):
    """A cache that is provably mhc's (its SQLite header says so) but damaged inside."""
    cache = tmp_path / "cache.sqlite"
    run(opts(corpus, tmp_path))
    for suffix in ("-wal", "-shm"):
        Path(f"{cache}{suffix}").unlink(missing_ok=True)
    data = bytearray(cache.read_bytes())
    data[100:] = os.urandom(len(data) - 100)  # header intact (mhc's application id), pages destroyed
    cache.write_bytes(bytes(data))
    res = run(opts(corpus, tmp_path))
    assert res.stats.decoded == len(res.files)
    aside = list(tmp_path.glob("cache.sqlite.corrupt-*"))
    assert aside and any("damaged" in r.message for r in caplog.records)
    # the rebuilt cache works: the next run is warm
    assert run(opts(corpus, tmp_path)).stats.decoded == 0


@pytest.mark.parametrize("damage", [b"this is not a database" * 100, b""])
def test_unknown_file_at_the_default_cache_path_is_set_aside(corpus, tmp_path, damage, caplog, user_cache_folder):
    """mhc's own cache folder is mhc's: whatever lies at its cache path is set aside."""
    o = Options(input=corpus, output=tmp_path / "out", algorithms=["phash_8"], workers=1)
    run(o)
    default = user_cache_folder / "hashes.sqlite"
    default.write_bytes(damage + os.urandom(4096) if damage else os.urandom(8192))
    for suffix in ("-wal", "-shm"):
        Path(f"{default}{suffix}").unlink(missing_ok=True)
    assert run(o).stats.decoded > 0
    assert list(user_cache_folder.glob("hashes.sqlite.corrupt-*"))
    assert run(o).stats.decoded == 0


def test_no_cache_leaves_no_file(corpus, tmp_path):
    res = run(opts(corpus, tmp_path, no_cache=True))
    assert res.stats.decoded == len(res.files)
    assert not (tmp_path / "cache.sqlite").exists()
    assert not list(tmp_path.glob("*.sqlite*"))


def test_cache_info_and_clear_commands(corpus, tmp_path):
    cache = tmp_path / "c.sqlite"
    r = run_cli("-i", str(corpus), "-o", str(tmp_path / "o"), "--cache", str(cache), "-a", "phash_8", "-a", "ahash_8", "-q")
    assert r.returncode == 0, r.stderr
    n = len([p for p in corpus.rglob("*.*") if p.suffix in (".jpg", ".png")]) - 1
    info = run_cli("cache", "info", "--cache", str(cache))
    assert info.returncode == 0
    assert f"{n + 1} files, {2 * n} hashes, 1 failures" in info.stdout
    assert "older mhc" not in info.stdout
    # hashes an older decoder made (as after an upgrade) are labelled, and counted
    import sqlite3

    with sqlite3.connect(cache) as db:
        db.execute("UPDATE hashes SET hkey = 'ahash_8|d1:fast256' WHERE hkey LIKE 'ahash_8|%'")
    info = run_cli("cache", "info", "--cache", str(cache)).stdout
    assert "ahash_8|d1:fast256" in info and "(an older mhc decoded these; no longer read)" in info
    assert f"{n} hashes were made by an older mhc" in info
    clear = run_cli("cache", "clear", "--cache", str(cache))
    assert clear.returncode == 0 and f"cleared {2 * n} hashes" in clear.stdout
    assert "0 files, 0 hashes" in run_cli("cache", "info", "--cache", str(cache)).stdout


@pytest.mark.parametrize("command", [["cache", "info"], ["ignore", "--list"], ["cache", "clear"]])
@pytest.mark.parametrize("given", ["a photo", "a folder", "another program's database"])
def test_what_is_not_an_mhc_cache_is_refused_not_read_as_an_empty_one(corpus, tmp_path, command, given):
    """`mhc cache info --cache photo.jpg` said "0 files, 0 hashes", `mhc ignore --list`
    "no pairs marked": as if the cache were there and empty."""
    import sqlite3

    target = {"a photo": corpus / "group0" / "original.jpg", "a folder": corpus / "group0",
              "another program's database": tmp_path / "photos.db"}[given]
    if given == "another program's database":
        with sqlite3.connect(target) as db:
            db.execute("CREATE TABLE albums (name TEXT)")
    before = tree_digest(tmp_path)
    r = run_cli(*command, "--cache", str(target))
    assert r.returncode == 2 and r.stdout == "", r.stdout
    assert r.stderr.startswith(f"Error: --cache {target} is ") and len(r.stderr.splitlines()) == 1, r.stderr
    assert tree_digest(tmp_path) == before


def test_an_upgrade_leaves_no_older_rows_behind(corpus, tmp_path):
    """After an upgrade (a new decoder version) every file is hashed again under its new
    key. Its rows from the older decoder are never read again: they are dropped when the
    new ones are stored, instead of staying until `mhc cache clear`. Keys of a newer mhc
    sharing the cache are kept."""
    o = opts(corpus, tmp_path)
    cache = tmp_path / "cache.sqlite"
    first = run(o)
    with sqlite3.connect(cache) as db:  # what an older mhc would have left (decoder 1)
        db.execute("UPDATE hashes SET hkey = replace(hkey, '|d3:', '|d1:')")
        db.execute("UPDATE failures SET dkey = replace(dkey, 'd3:', 'd1:')")
        db.execute("INSERT INTO hashes SELECT path, 'phash_8|d99:fast256', value FROM hashes LIMIT 1")
        n_old = db.execute("SELECT count(*) FROM hashes WHERE hkey LIKE '%|d1:%'").fetchone()[0]
        assert n_old > 0 and db.execute("SELECT count(*) FROM failures WHERE dkey LIKE 'd1:%'").fetchone()[0] == 1
    assert "older mhc" in run_cli("cache", "info", "--cache", str(cache)).stdout
    again = run(o)
    assert again.stats.decoded == first.stats.decoded > 0  # the older keys are not read
    with sqlite3.connect(cache) as db:
        assert db.execute("SELECT count(*) FROM hashes WHERE hkey LIKE '%|d1:%'").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM failures WHERE dkey LIKE 'd1:%'").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM failures").fetchone()[0] == 1  # the broken file's, anew
        assert db.execute("SELECT count(*) FROM hashes WHERE hkey LIKE '%|d99:%'").fetchone()[0] == 1
    info = run_cli("cache", "info", "--cache", str(cache)).stdout
    assert "older mhc" not in info
    assert run(o).stats.decoded == 0


def test_a_cache_of_a_newer_mhc_is_left_as_it_is(corpus, tmp_path):
    """Two mhc versions sharing the default cache: this one migrated a newer schema down,
    dropping the newer one's hashes (which then dropped this one's on its next run)."""
    import hashlib

    cache, out = tmp_path / "c.sqlite", tmp_path / "out"
    assert run_cli("-i", str(corpus), "-o", str(out), "--cache", str(cache), "-a", "phash_8", "-q").returncode == 0
    with sqlite3.connect(cache) as db:
        db.execute("UPDATE meta SET value = '3' WHERE key = 'schema'")
    db.close()
    digest = hashlib.sha256(cache.read_bytes()).hexdigest()
    a, b = sorted(str(p) for p in corpus.rglob("*.jpg"))[:2]
    for args in ([], ["-n"]):  # a run: one warning, the work done in memory
        r = run_cli("-i", str(corpus), "-o", str(out), "--cache", str(cache), "-a", "phash_8", "-q", *args)
        assert r.returncode == 0, r.stderr
        assert r.stderr.count("was written by a newer mhc (cache schema 3; this one reads 2); this run leaves it as "
                              "it is") == 1, r.stderr
    for args in (["cache", "info"], ["cache", "clear"], ["ignore", a, b], ["ignore", "--list"]):
        r = run_cli(*args, "--cache", str(cache))  # the user's commands on the cache itself: refused
        assert (r.returncode, r.stderr) == (2, f"Error: the hash cache {cache} was written by a newer mhc (cache "
                                               f"schema 3; this one reads 2); use that mhc for this (this one leaves "
                                               f"it as it is)\n"), (args, r.stderr)
    assert hashlib.sha256(cache.read_bytes()).hexdigest() == digest
    with sqlite3.connect(cache) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("3",)
        assert db.execute("SELECT count(*) FROM hashes").fetchone()[0] > 0
    db.close()
    # a mark that is not a number is not called a newer mhc's (set to '' or to bytes by
    # another program, the user was told to upgrade); it is left as it is all the same
    for mark in ("", b"\xff"):
        with sqlite3.connect(cache) as db:
            db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (mark,))
        db.close()
        r = run_cli("-i", str(corpus), "-o", str(out), "--cache", str(cache), "-a", "phash_8", "-q")
        assert r.returncode == 0 and f"has a version mark this mhc does not know ({mark!r}: a newer mhc's, or " \
            f"changed by another program); this run leaves it as it is" in r.stderr, r.stderr
        assert "was written by a newer mhc" not in r.stderr


def test_interrupted_store_keeps_what_was_computed(corpus, tmp_path):
    """Results reach the cache in batches as they arrive, before the run ends."""
    files = discover(corpus).files
    plan = HashPlan.build(parse_algorithms(["phash_8"]))
    seen = []

    def progress(e):
        if e.stage == "hash" and e.done >= 6:
            seen.append(e.done)
            raise KeyboardInterrupt

    with HashCache(tmp_path / "c.sqlite") as cache:
        with pytest.raises(KeyboardInterrupt):
            compute_hashes(files, plan, cache, workers=1, progress=progress, flush_every=4)
    with HashCache(tmp_path / "c.sqlite") as cache:
        cached = cache.lookup(files, [plan.hkey(a) for a in plan.algorithms], [plan.dkey()])
    assert len(cached.values) + len(cached.failures) == 6 == seen[0]


def test_hard_links_are_decoded_once_and_cached_under_each_name(tmp_path, monkeypatch):
    """A backup made with rsync --link-dest holds each photo once per snapshot, as hard
    links: one decode serves every name, and each name gets its own cache rows."""
    from mhc import runner

    inp = tmp_path / "in"
    a = save(photo(1), inp / "2024" / "a.jpg")
    os.makedirs(inp / "2025")
    os.link(a, inp / "2025" / "a.jpg")
    os.link(a, inp / "2025" / "a again.jpg")
    d = save(photo(2), inp / "2025" / "d.jpg")
    calls = []
    decode = runner.hash_file
    monkeypatch.setattr(runner, "hash_file", lambda p, plan, kind: calls.append(p) or decode(p, plan, kind))
    files = discover(inp).files
    plan = HashPlan.build(parse_algorithms(["phash_8", "dhash_8"]))
    with HashCache(tmp_path / "c.sqlite") as cache:
        res = compute_hashes(files, plan, cache, workers=1)
    assert sorted(calls) == [str(a), str(d)]
    assert len(res.values) == 4 and res.stats.failed == 0 and (res.stats.decoded, res.stats.shared) == (4, 2)
    assert res.values[str(inp / "2025" / "a again.jpg")] == res.values[str(a)] != res.values[str(d)]
    with HashCache(tmp_path / "c.sqlite") as cache:
        cached = cache.lookup(files, [plan.hkey(x) for x in plan.algorithms], [plan.dkey()])
    assert {p for p, v in cached.values.items() if len(v) == 2} == {f.path for f in files}


def test_moved_renamed_and_copied_files_are_not_hashed_again(tmp_path, monkeypatch):
    """A library reorganised (folders renamed, files moved, copied with cp -p) holds the
    same files: their hashes are found by size, mtime and the sampled digest, and copied
    to the new paths. A file of the same size and mtime but other bytes is hashed."""
    import shutil

    from mhc import runner

    inp = tmp_path / "in"
    a = save(photo(1), inp / "2019" / "a.jpg")
    b = save(photo(2), inp / "2019" / "b.png")
    c = save(photo(3), inp / "c.jpg")
    plan = HashPlan.build(parse_algorithms(["phash_8", "dhash_8"]))

    def hashed() -> tuple[list[str], dict]:
        calls = []
        decode = runner.hash_file
        monkeypatch.setattr(runner, "hash_file", lambda p, plan, kind: calls.append(p) or decode(p, plan, kind))
        files = discover(inp).files
        with HashCache(tmp_path / "c.sqlite") as cache:
            res = compute_hashes(files, plan, cache, workers=1)
            cache.forget_missing(str(inp), [f.path for f in files])
        return sorted(calls), res.values

    first = hashed()[1]
    os.rename(inp / "2019", inp / "Archive 2019")  # a folder renamed
    shutil.copy2(c, inp / "c copy.jpg")  # a copy that keeps its mtime
    other = save(photo(4), inp / "d.jpg")  # a different picture ...
    with open(other, "r+b") as f:  # ... of c's size and mtime
        f.truncate(c.stat().st_size)
    os.utime(other, ns=(c.stat().st_atime_ns, c.stat().st_mtime_ns))
    calls, values = hashed()
    assert calls == [str(other)]
    moved = {str(inp / "Archive 2019" / "a.jpg"): str(a), str(inp / "Archive 2019" / "b.png"): str(b),
             str(inp / "c copy.jpg"): str(c)}
    assert all(values[new] == first[old] for new, old in moved.items())
    with HashCache(tmp_path / "c.sqlite") as cache:  # the new paths have rows of their own, the old ones none
        cached = cache.lookup(discover(inp).files, [plan.hkey(x) for x in plan.algorithms], [plan.dkey()])
        assert set(moved) <= set(cached.values) and cached.info[str(inp / "c copy.jpg")].width == 320
        assert not {str(a), str(b)} & {os.fsdecode(p) for (p,) in cache.db.execute("SELECT path FROM files")}
    assert hashed()[0] == []  # and a third run hashes nothing


def test_cache_keys_do_not_mix_exact_and_fast(corpus, tmp_path):
    fast = run(opts(corpus, tmp_path))
    exact = run(opts(corpus, tmp_path, exact=True))
    assert exact.stats.decoded == len(exact.files)  # not served from the fast rows
    with HashCache(tmp_path / "cache.sqlite") as c:
        keys = c.info().keys
    assert len(keys) == 2 and any("exact" in k for k in keys)
    assert fast.stats.decoded == len(fast.files)


def _ham(a: bytes, b: bytes) -> int:
    return int(np.unpackbits(np.frombuffer(a, np.uint8) ^ np.frombuffer(b, np.uint8)).sum())


def test_fast_decoder_stays_close_to_imagehash_on_full_resolution(tmp_path):
    """Mean Hamming distance to imagehash on the full image: <= 1 bit (64-bit), <= 2 (256-bit)."""
    import imagehash
    from PIL import Image

    algos = parse_algorithms(["phash_8", "ahash_8", "dhash_8", "whash_8", "phash_16", "dhash_16", "ahash_16"])
    fast = HashPlan.build(algos)
    paths = []
    for k in range(8):  # large JPEGs so that draft decoding really downscales (1/4 .. 1/8)
        paths.append(save(photo(300 + k, (2400, 1800)), tmp_path / f"big{k}.jpg", quality=90))
    from mhc.hashing import hash_file

    diffs: dict[str, list[int]] = {a.key: [] for a in algos}
    funcs = {"phash": imagehash.phash, "ahash": imagehash.average_hash, "dhash": imagehash.dhash, "whash": imagehash.whash}
    for p in paths:
        r = hash_file(str(p), fast)
        assert r.error is None
        with Image.open(p) as im:
            for a in algos:
                ref = funcs[a.name](im, hash_size=a.size)
                diffs[a.key].append(_ham(r.values[fast.hkey(a)], np.packbits(ref.hash.ravel()).tobytes()))
    for a in algos:
        mean = sum(diffs[a.key]) / len(diffs[a.key])
        assert mean <= (1.0 if a.bits == 64 else 2.0), (a.key, diffs[a.key])
    assert fast.decode.min_side == 256


def test_exact_mode_is_bit_exact_with_imagehash(tmp_path):
    import imagehash
    from PIL import Image

    from mhc.hashing import hash_file

    p = save(photo(77, (1200, 900)), tmp_path / "x.jpg", quality=90)
    algos = parse_algorithms(["phash_8", "dhash_16", "whash_8", "ahash_8", "colorhash_3"])
    plan = HashPlan.build(algos, exact=True)
    r = hash_file(str(p), plan)
    with Image.open(p) as im:
        refs = {"phash_8": imagehash.phash(im), "dhash_16": imagehash.dhash(im, 16), "whash_8": imagehash.whash(im),
                "ahash_8": imagehash.average_hash(im), "colorhash_3": imagehash.colorhash(im, 3)}
    for a in algos:
        assert a.to_hex(r.values[plan.hkey(a)]) == str(refs[a.key]), a.key


def test_max_pixels_follows_the_option_not_the_cache(tmp_path):
    """A --max-pixels refusal is not cached, and a cached hash does not bypass a lower limit."""
    inp = tmp_path / "in"
    save(photo(1, (640, 480)), inp / "big.jpg")  # 307,200 pixels
    save(photo(2, (200, 150)), inp / "small.jpg")
    o = dict(input=inp, output=tmp_path / "out", cache=tmp_path / "c.sqlite", algorithms=["phash_8"], workers=1)
    low = run(Options(max_pixels=100_000, **o))
    assert [(e.path, "--max-pixels" in e.reason) for e in low.errors] == [(str(inp / "big.jpg"), True)]
    high = run(Options(max_pixels=1_000_000_000, **o))
    assert high.errors == [] and len(high.files) == 2 and high.stats.decoded == 1  # decoded now, not refused
    again = run(Options(max_pixels=100_000, **o))  # everything is cached, yet the limit holds
    assert [e.path for e in again.errors] == [str(inp / "big.jpg")] and again.stats.decoded == 0


def test_access_failures_are_not_cached(tmp_path):
    """'permission denied' stays only while it is true (chmod changes no size or mtime)."""
    import subprocess

    from conftest import ROOT, unprivileged

    inp = tmp_path / "in"
    save(photo(1), inp / "fine.jpg")
    secret = save(photo(2), inp / "secret.jpg")
    cache = tmp_path / "c.sqlite"
    cmd = unprivileged([sys.executable, str(ROOT / "cluster.py"), "-i", str(inp), "-o", str(tmp_path / "o"), "--cache",
                        str(cache), "-a", "phash_8", "-q"])
    secret.chmod(0)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    finally:
        secret.chmod(0o644)
    assert r.returncode == 0, r.stderr
    assert "secret.jpg,permission denied" in (tmp_path / "o" / "errors.csv").read_text()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "secret.jpg" not in (tmp_path / "o" / "errors.csv").read_text()  # retried, hashed


def test_content_change_keeping_size_and_mtime_is_noticed(tmp_path):
    """Copied over and `touch -r`-ed, or two same-size files swapped by renames: the output
    shows the new content (BMPs of one size have one byte size)."""
    inp = tmp_path / "in"
    a = save(photo(1), inp / "a.bmp")
    b = save(photo(2), inp / "b.bmp")
    c = save(photo(3), inp / "c.bmp")
    assert a.stat().st_size == b.stat().st_size == c.stat().st_size
    o = dict(input=inp, output=tmp_path / "out", cache=tmp_path / "c.sqlite", algorithms=["phash_8"], workers=1)
    first = run(Options(**o))
    hexes = dict(zip(first.files, first.algorithms[0].hexes))
    # 1. b copied over c, c's times put back (cp b c; touch -r ref c)
    st = c.stat()
    c.write_bytes(b.read_bytes())
    os.utime(c, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = run(Options(**o))
    assert second.stats.decoded == 1
    assert dict(zip(second.files, second.algorithms[0].hexes))[str(c)] == hexes[str(b)]
    # 2. a and b swapped by three renames; their mtimes made equal first
    for f in (a, b):
        os.utime(f, ns=(10**18, 10**18))
    run(Options(**o))
    os.rename(a, inp / "tmp.bmp")
    os.rename(b, a)
    os.rename(inp / "tmp.bmp", b)
    swapped = run(Options(**o))
    now = dict(zip(swapped.files, swapped.algorithms[0].hexes))
    assert now[str(a)] == hexes[str(b)] and now[str(b)] == hexes[str(a)]
    # 3. a touch of the ctime alone (chmod) reads a sample of the file, decodes nothing
    c.chmod(0o600)
    assert run(Options(**o)).stats.decoded == 0


def test_a_disk_mounted_again_under_another_device_reads_no_file(loop_disk, tmp_path, monkeypatch):
    """A disk mounted again gets another device number (a USB disk plugged in after
    another): every file's sample was read to confirm it (about ten seeks a file, hours on
    an external disk of photos). Same inode, ctime, size and mtime: trusted as it is; a file
    changed meanwhile (its ctime moved) is still read and, changed, hashed again."""
    import mhc.cache

    photos = loop_disk.mnt / "photos"
    for i in range(3):
        save(photo(i), photos / f"p{i}.bmp")  # (BMPs of one size: one byte size)
    o = dict(input=photos, output=tmp_path / "out", cache=tmp_path / "c.sqlite", algorithms=["phash_8"], workers=1)
    first = run(Options(**o))
    hexes = dict(zip(first.files, first.algorithms[0].hexes))
    first_dev = (photos / "p0.bmp").stat().st_dev
    loop_disk.remount()
    assert (photos / "p0.bmp").stat().st_dev != first_dev
    st = (photos / "p2.bmp").stat()  # p1 copied over p2, p2's times put back (cp p1 p2; touch -r)
    (photos / "p2.bmp").write_bytes((photos / "p1.bmp").read_bytes())
    os.utime(photos / "p2.bmp", ns=(st.st_atime_ns, st.st_mtime_ns))
    read = []
    real = mhc.cache.content_sample
    monkeypatch.setattr(mhc.cache, "content_sample", lambda p, n: read.append(os.path.basename(p)) or real(p, n))
    again = run(Options(**o))
    assert read == ["p2.bmp"] and again.stats.decoded == 1
    assert dict(zip(again.files, again.algorithms[0].hexes))[str(photos / "p2.bmp")] == hexes[str(photos / "p1.bmp")]
    read.clear()
    assert run(Options(**o)).stats.decoded == 0 and read == []  # the new device number was recorded


def test_a_disk_not_mounted_for_one_run_keeps_its_hashes(loop_disk, tmp_path):
    """A run over a folder with a disk mounted inside it (-i /media/me, the USB disk at
    /media/me/USB) while the disk is unplugged: its files were dropped from the cache as
    deleted, and every one was decoded again once it was back (hours for a disk of photos).
    They stay now; files deleted for real (here, or with their folder) still go."""
    inp, usb = loop_disk.mnt.parent, loop_disk.mnt
    for i in range(3):
        save(photo(i, (160, 120)), usb / "trip" / f"p{i}.jpg")
    save(photo(7, (160, 120)), usb / "top.jpg")  # (right under the mount point, which stays as a folder)
    save(photo(8, (160, 120)), inp / "beside.jpg")
    save(photo(9, (160, 120)), inp / "old" / "deleted with its folder.jpg")
    save(photo(10, (160, 120)), inp / "deleted.jpg")
    cache = tmp_path / "c.sqlite"
    o = dict(input=inp, output=tmp_path / "out", cache=cache, algorithms=["phash_8"], workers=1)
    assert len(run(Options(**o)).files) == 7
    cached = lambda: {os.fsdecode(bytes(r[0])) for r in sqlite3.connect(cache).execute("SELECT path FROM hashes")}
    assert len(cached()) == 7
    assert loop_disk._umount()  # unplugged
    (inp / "deleted.jpg").unlink()
    shutil.rmtree(inp / "old")
    assert run(Options(**o)).files == [str(inp / "beside.jpg")]
    assert cached() == {str(inp / "beside.jpg"), str(usb / "top.jpg"), *(str(usb / "trip" / f"p{i}.jpg") for i in range(3))}
    loop_disk._mount()  # plugged in again (another loop device: another device number)
    again = run(Options(**o))
    assert len(again.files) == 5 and again.stats.decoded == 0


def test_on_exfat_a_remount_does_not_vouch_for_a_file(exfat_disk, tmp_path):
    """exFAT makes inode numbers up at each mount (and its ctime is its mtime): after a
    remount the same inode number says nothing, so a file copied over with its times put
    back is read and hashed again, not served the old file's hashes."""
    photos = exfat_disk.mnt / "photos"
    for i in range(3):
        save(photo(i), photos / f"p{i}.bmp")  # (BMPs of one size: one byte size)
        os.utime(photos / f"p{i}.bmp", (1_700_000_000, 1_700_000_000))
    o = dict(input=photos, output=tmp_path / "out", cache=tmp_path / "c.sqlite", algorithms=["phash_8"], workers=1)
    first = run(Options(**o))
    hexes = dict(zip(first.files, first.algorithms[0].hexes))
    before = {p.name: (p.stat().st_ino, p.stat().st_ctime_ns) for p in sorted(photos.iterdir())}
    exfat_disk.remount()
    for i in range(3):  # looked up in the first mount's order: the same inode numbers again
        os.stat(photos / f"p{i}.bmp")
    (photos / "p2.bmp").write_bytes((photos / "p1.bmp").read_bytes())  # cp p1 p2; touch -r
    os.utime(photos / "p2.bmp", (1_700_000_000, 1_700_000_000))
    after = {p.name: (p.stat().st_ino, p.stat().st_ctime_ns) for p in sorted(photos.iterdir())}
    assert after["p2.bmp"] == before["p2.bmp"]  # (the case at hand: nothing in the stat tells)
    again = run(Options(**o))
    assert dict(zip(again.files, again.algorithms[0].hexes))[str(photos / "p2.bmp")] == hexes[str(photos / "p1.bmp")]


def test_a_hash_does_not_depend_on_the_other_algorithms_computed_with_it(tmp_path):
    """The cache keeps one value per file and algorithm, so that value must be what the
    algorithm computes alone: a shared decode at the largest algorithm's size used to move
    ahash_8 hashes by a bit when phash_20 was computed with it."""
    from PIL import Image

    from mhc.hashing import hash_file

    paths = [save(photo(400, (640, 480)), tmp_path / "small.jpg", quality=85),
             save(photo(401, (2100, 1600)), tmp_path / "large.jpg", quality=85),
             save(photo(402, (900, 700)), tmp_path / "plain.png"),
             save(photo(403, (700, 900)).convert("L"), tmp_path / "grey.jpg"),
             save(photo(404, (1000, 800)).convert("CMYK"), tmp_path / "cmyk.jpg")]
    rgba = photo(405, (800, 600)).convert("RGBA")
    rgba.putalpha(Image.new("L", rgba.size, 128))
    paths.append(save(rgba, tmp_path / "alpha.png"))
    everything = parse_algorithms(["ahash_8", "whash_8", "phash_20", "colorhash_8", "dhash_16", "phash_32"])
    for exact in (False, True):
        full = HashPlan.build(everything, exact=exact, isometric=not exact, verify=True)
        for p in paths if not exact else paths[:1] + paths[-1:]:  # exact: one full decode, two files suffice
            together = hash_file(str(p), full)
            assert together.error is None, together.error
            for a in everything:
                alone_plan = HashPlan.build([a], exact=exact, isometric=not exact)
                alone = hash_file(str(p), alone_plan)
                assert alone.values[alone_plan.hkey(a)] == together.values[full.hkey(a)], (p.name, a.key, exact)
                if not exact:
                    assert alone.values[alone_plan.iso_key(a)] == together.values[full.iso_key(a)], (p.name, a.key)
            ssim_alone = HashPlan.build(everything[:1], exact=exact, verify=True)
            assert hash_file(str(p), ssim_alone).values[ssim_alone.ssim_key()] == together.values[full.ssim_key()]


def test_a_file_dated_past_2262_is_cached_and_its_change_seen(tmp_path):
    """An mtime past 2262 (a camera's clock, an archive's bad date; ext4 keeps up to 2446)
    does not fit SQLite's 64-bit INTEGER in ns: the run used to end in "mhc failed
    unexpectedly: OverflowError" at the cache write. It is stored, found again on the rerun,
    and a later change of that mtime still rehashes the file."""
    inp = tmp_path / "in"
    save(photo(1, (64, 48)), inp / "future.jpg")
    save(photo(2, (64, 48)), inp / "today.jpg")
    os.utime(inp / "future.jpg", (15_000_000_000, 15_000_000_000))  # the year 2445
    if (inp / "future.jpg").stat().st_mtime_ns < 2**63:
        pytest.skip("this file system does not keep dates past 2262")
    o = Options(input=inp, output=tmp_path / "out", cache=tmp_path / "c.sqlite", algorithms=["phash_8"], workers=1)
    assert run(o).stats.decoded == 2
    again = run(o)
    assert (again.stats.decoded, again.stats.cached) == (0, 2)
    os.utime(inp / "future.jpg", (15_000_000_001, 15_000_000_001))
    assert run(o).stats.decoded == 1


def test_reading_the_cache_leaves_no_sqlite_files_beside_it(tmp_path):
    """A read-only SQLite connection cannot remove the -wal and -shm files it makes beside a
    WAL database: every run left them (its "not a duplicate" marks are read after hashing),
    and a dry run, which writes nothing, made them. Now the folder holds the cache alone, and
    a dry run, `mhc cache info` and `mhc ignore --list` leave it byte for byte."""
    inp, cache = tmp_path / "in", tmp_path / "cache" / "c.sqlite"
    for k in range(3):
        save(photo(k), inp / f"p{k}.jpg")
    r = run_cli("-i", str(inp), "-o", str(tmp_path / "out"), "--cache", str(cache), "-a", "phash_8", "-q")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in cache.parent.iterdir()) == ["c.sqlite", "c.sqlite.forests"]
    before = tree_digest(cache.parent)
    for args in (["-i", str(inp), "-o", str(tmp_path / "out"), "-a", "phash_8,dhash_8", "-q", "--dry-run"],
                 ["cache", "info"], ["ignore", "--list"]):
        r = run_cli(*args, "--cache", str(cache))
        assert r.returncode == 0, (args, r.stderr)
        assert tree_digest(cache.parent) == before, args


def test_rows_another_program_wrote_are_not_read(corpus, tmp_path):
    """SQLite stores any type in any column. A hash of the wrong length or type, facts of
    the wrong type, a key that is not text, a failure or a "not a duplicate" mark that is
    not mhc's (another program, a hand, an edit gone wrong) ended the run with a TypeError
    (exit 70) or "pack: hashes of different lengths" (exit 2, telling the user to "pack the
    hashes of one algorithm"). Now such a row is not read: the file is hashed again and
    the row replaced, and the output is the one a run without the cache makes."""
    o = opts(corpus, tmp_path, ("phash_8", "pdq_16", "colorhash_8"), isometric=True, thresholds="0:12:4")
    fresh = run(dataclasses.replace(o, output=tmp_path / "fresh", no_cache=True, cache=None))
    run(o)
    db = sqlite3.connect(tmp_path / "cache.sqlite")
    paths = [p for (p,) in db.execute("SELECT DISTINCT path FROM hashes ORDER BY path")]  # (pictures that hash)
    keys = sorted({k for (k,) in db.execute("SELECT hkey FROM hashes")})
    plain, iso = [k for k in keys if k.startswith("phash_8|") and "|iso" not in k], [k for k in keys if "|iso" in k]
    quality, color = [k for k in keys if k.endswith("|quality")], [k for k in keys if k.startswith("colorhash")]
    changes = [  # (table, column, value, where: path index and key)
        ("hashes", "value", b"\xff" * 3, 0, plain[0]), ("hashes", "value", 1.5, 1, plain[0]),
        ("hashes", "value", "ffff0000ffff0000", 2, plain[0]), ("hashes", "value", b"", 3, color[0]),
        ("hashes", "value", b"\x00" * 9, 4, iso[0]), ("hashes", "value", b"\x00" * 2, 5, quality[0]),
        ("hashes", "hkey", b"\x01\x02", 6, plain[0]),
    ]
    for table, column, value, i, key in changes:
        assert db.execute(f"UPDATE hashes SET {column} = ? WHERE path = ? AND hkey = ?", (value, paths[i], key)).rowcount
    db.execute("UPDATE files SET format = ? WHERE path = ?", (b"JPEG", paths[7]))
    db.execute("UPDATE files SET width = ? WHERE path = ?", ("wide", paths[8]))  # (TEXT: not an INTEGER)
    db.execute("INSERT INTO failures VALUES (?, ?, ?)", (paths[9], "d3:fast", b"\x00"))
    db.execute("INSERT INTO ignored VALUES (1, 2)")
    copy = "INSERT INTO files SELECT ?, dev, ino, size, mtime_ns, ctime_ns, sample, width, height, format, taken " \
           "FROM files WHERE path = ?"
    for other in (os.fsdecode(paths[0]) + " as text", paths[0] + b"\0.jpg", os.fsencode(corpus) + b"/d\0ir/x.jpg"):
        db.execute(copy, (other, paths[0]))  # paths as text, and with a NUL (TypeError, ValueError)
    # a file's row moved to a path with a NUL: the file's twin by size, mtime and content
    db.execute("UPDATE files SET path = ? WHERE path = ?", (b"\0" * 8, paths[10]))
    db.commit()
    db.close()
    r = run_cli("cache", "info", "--cache", str(tmp_path / "cache.sqlite"))
    assert r.returncode == 0 and "rows whose key is not text (written by another program; never read): 1" in r.stdout
    r = run_cli("ignore", "--list", "--cache", str(tmp_path / "cache.sqlite"))
    assert r.returncode == 0, r.stderr
    again = run(o)
    def clusters(result):
        return {c.key: [[sorted(map(int, k)) for k in p.clusters] for p in c.partitions] for c in result.algorithms}

    assert clusters(again) == clusters(fresh)
    assert [e.path for e in again.errors] == [e.path for e in fresh.errors]  # (the corrupt file: its own row)
    assert again.collection.info == fresh.collection.info
    assert again.collection.stats.decoded == 10  # paths[0-8] and [10]; paths[9]'s stray failure row is not read
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:  # (files under the input that are not there: gone)
        assert db.execute("SELECT path FROM files WHERE instr(path, x'00')").fetchall() == [(b"\0" * 8,)]
    db.close()
    third = run(o)  # the rows were replaced: nothing is decoded now
    assert third.collection.stats.decoded == 0
    r = run_cli("cache", "info", "--cache", str(tmp_path / "cache.sqlite"))
    assert r.returncode == 0 and "not text" not in r.stdout  # dropped when its file was hashed again


def test_a_videos_facts_and_an_ssim_thumbnail_another_program_wrote_are_not_read(tmp_path):
    """The same for values that are not hashes: a video's facts (JSON) that are not JSON
    ended the run in json.loads, an SSIM thumbnail of another size in numpy's reshape."""
    pytest.importorskip("skimage")
    from conftest import make_video

    inp = tmp_path / "in"
    make_video(inp / "a.mp4", [photo(1), photo(2)], seconds=1.0)
    make_video(inp / "a copy.mp4", [photo(1), photo(2)], seconds=1.0, bitrate=90_000)
    for k in range(3):
        save(photo(10 + k), inp / f"p{k}.jpg")
    o = opts(inp, tmp_path, ("phash_8",), verify="ssim", thresholds="0:8:4")
    fresh = run(dataclasses.replace(o, output=tmp_path / "fresh", no_cache=True, cache=None))
    run(o)
    db = sqlite3.connect(tmp_path / "cache.sqlite")
    for like, value in (("meta|%", b"not json"), ("ssim%", b"\x00" * 100), ("phash_8|v%", b"\x00" * 9)):
        path, key = db.execute("SELECT path, hkey FROM hashes WHERE hkey LIKE ? LIMIT 1", (like,)).fetchone()
        db.execute("UPDATE hashes SET value = ? WHERE path = ? AND hkey = ?", (value, path, key))
    db.commit()
    db.close()
    again = run(o)
    assert [[sorted(map(int, c)) for c in p.clusters] for p in again.algorithms[0].partitions] == \
        [[sorted(map(int, c)) for c in p.clusters] for p in fresh.algorithms[0].partitions]
    assert again.collection.video_meta == fresh.collection.video_meta and 1 <= again.collection.stats.decoded <= 3
