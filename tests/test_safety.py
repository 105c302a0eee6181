"""Interruptions, concurrent runs and parsing: the output is always whole, never mixed."""
from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import os
import signal
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mhc import MhcError, Options, UsageError, parse_algorithm, run
from mhc.algorithms import Algorithm
from mhc.names import link_name, unique_link_names
from mhc.output import OutputFolder
from mhc.thresholds import parse_thresholds

from conftest import ROOT, gone_soon, photo, run_cli, save, tree_digest


@pytest.fixture(scope="module")
def slow_corpus(tmp_path_factory) -> Path:
    """Enough large PNGs that hashing them exactly takes several seconds on 2 cores."""
    root = tmp_path_factory.mktemp("slow") / "in"
    for k in range(48):
        save(photo(k, (1400, 1050)), root / f"{k // 10}" / f"p{k:03d}.png")
    return root


def _processes_naming(text: str) -> list[int]:
    """Pids whose command line holds ``text``."""
    found = []
    for d in os.listdir("/proc"):
        try:
            if d.isdigit() and text.encode() in Path(f"/proc/{d}/cmdline").read_bytes():
                found.append(int(d))
        except OSError:
            pass
    return found


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "cluster.py"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _cache_rows(cache: Path) -> int:
    import sqlite3

    if not cache.exists():
        return 0
    with sqlite3.connect(cache) as db:
        return db.execute("SELECT count(*) FROM hashes").fetchone()[0]


def _wait_for(cond, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


def _complete(out: Path) -> dict:
    """Assert `out` is a whole mhc tree (every file once per threshold folder); return its summary."""
    summary = json.loads((out / "summary.json").read_text())
    assert (out / ".mhc-output").exists()
    for key, entry in summary["algorithms"].items():
        names = sorted(p.name for p in (out / key).iterdir())
        assert names == sorted(t["folder"] for t in entry["thresholds"])
        for t in entry["thresholds"]:
            links = [p for p in (out / key / t["folder"]).rglob("*") if p.is_symlink()]
            assert len(links) == len(summary["files"])
    return summary


# SIGTERM (kill, timeout, a service manager) and SIGHUP (the terminal closed) are handled as
# Ctrl-C is, each with its own status
STOPPED = {signal.SIGINT: (130, "Interrupted."), signal.SIGTERM: (143, "Stopped (SIGTERM)."),
           signal.SIGHUP: (129, "Stopped (SIGHUP: the terminal closed).")}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL])
def test_interrupt_while_hashing_keeps_previous_output_and_cache(slow_corpus, tmp_path, sig):
    out, cache = tmp_path / "out", tmp_path / "cache.sqlite"
    # a previous complete output
    assert run_cli("-i", str(slow_corpus), "-o", str(out), "--cache", str(cache), "-a", "ahash_8", "-t", "0:2:1", "-q").returncode == 0
    before = tree_digest(out)
    p = _start("-i", str(slow_corpus), "-o", str(out), "--cache", str(cache), "-a", "phash_16", "-a", "whash_16",
               "--exact", "-j", "2")
    _wait_for(lambda: _cache_rows(cache) >= 48 + 4)  # some new hashes stored, hashing goes on
    p.send_signal(sig)
    stdout, stderr = p.communicate(timeout=60)
    if sig in STOPPED:
        code, line = STOPPED[sig]
        assert p.returncode == code
        assert stderr.splitlines()[-1].startswith(line) and "Traceback" not in stderr, stderr
        assert not list(tmp_path.glob(".out.mhc-staging-*"))  # cleared on the way out
    else:
        assert p.returncode == -signal.SIGKILL
    assert tree_digest(out) == before  # the previous complete tree, untouched
    kept = _cache_rows(cache) - 48
    assert 0 < kept < 2 * 48
    # the next run finishes, from the cache for what was kept
    r = run_cli("-i", str(slow_corpus), "-o", str(out), "--cache", str(cache), "-a", "phash_16", "-a", "whash_16",
                "--exact", "-j", "2")
    assert r.returncode == 0, r.stderr
    summary = _complete(out)
    assert summary["counts"]["decoded"] < 48
    assert set(summary["algorithms"]) == {"ahash_8", "phash_16", "whash_16"}
    assert not list(tmp_path.glob(".out.mhc-staging-*"))  # no staging left
    assert gone_soon(tmp_path, ".out.mhc-old-*")  # the old tree is removed in the background


def test_interrupting_mhc_pairs_speaks_of_the_cache_not_of_an_output(corpus, tmp_path, monkeypatch, capfd):
    """`mhc pairs` writes no output folder: Ctrl-C said "The previous output is unchanged".
    (Ctrl-C lands while hashing, where a signal sent from outside raced the end of a short
    run; the real signal's path is the main command's tests above.)"""
    import mhc.collection
    from mhc.cli import main

    def hashing(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(mhc.collection, "hash_folder", hashing)
    rc = main(["pairs", "-i", str(corpus), "--cache", str(tmp_path / "c.sqlite"), "-a", "phash_8", "-t", "4"])
    out, err = capfd.readouterr()
    assert rc == 130 and out == "", out
    assert err.splitlines()[-1] == "Interrupted. Hashes computed so far are kept in the cache; run again to continue."


def test_under_nohup_a_closed_terminal_does_not_stop_the_run(slow_corpus, tmp_path):
    """`nohup ./cluster.py ...` ignores SIGHUP: mhc keeps it ignored (it handles SIGHUP only
    where it would otherwise end the process), and so do its hashing workers."""
    out, cache = tmp_path / "out", tmp_path / "cache.sqlite"
    p = subprocess.Popen(["nohup", sys.executable, str(ROOT / "cluster.py"), "-i", str(slow_corpus), "-o", str(out),
                          "--cache", str(cache), "-a", "phash_16", "--exact", "-j", "2", "-q"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    _wait_for(lambda: _cache_rows(cache) >= 4)
    os.killpg(p.pid, signal.SIGHUP)  # as a closing terminal does: the whole process group
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 0, stderr
    assert len(_complete(out)["files"]) == 48


@pytest.fixture(scope="module")
def many_small(tmp_path_factory) -> Path:
    """Hundreds of tiny pictures: quick to hash, ~100,000 links to write for a long sweep."""
    from PIL import Image
    import numpy as np

    root = tmp_path_factory.mktemp("many") / "in"
    rng = np.random.default_rng(3)
    for k in range(400):
        im = Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8), "L").resize((32, 32))
        save(im, root / f"{k // 50}" / f"p{k:03d}.png")
    return root


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL])
def test_interrupt_while_writing_leaves_old_or_new_tree(many_small, tmp_path, sig):
    slow_corpus = many_small
    out, cache = tmp_path / "out", tmp_path / "cache.sqlite"
    assert run_cli("-i", str(slow_corpus), "-o", str(out), "--cache", str(cache), "-a", "dhash_8", "-t", "0", "-q").returncode == 0
    before = tree_digest(out)
    # warm the cache so the next run goes straight to writing; many thresholds = much writing
    assert run_cli("-i", str(slow_corpus), "-o", str(tmp_path / "scratch"), "--cache", str(cache), "-a", "ahash_16",
                   "-q").returncode == 0
    p = _start("-i", str(slow_corpus), "-o", str(out), "--cache", str(cache), "-a", "ahash_16", "-t", "0:256:1",
               "--no-report")
    staging = lambda: list(tmp_path.glob(".out.mhc-staging-*"))
    _wait_for(lambda: any((s / "ahash_16").exists() for s in staging()) or p.poll() is not None)
    assert p.poll() is None, "the run ended before it was interrupted; make it write more"
    p.send_signal(sig)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == (STOPPED[sig][0] if sig in STOPPED else -signal.SIGKILL)
    assert tree_digest(out) == before
    if sig in STOPPED:
        assert stderr.splitlines()[-1].startswith(STOPPED[sig][1]) and "Traceback" not in stderr, stderr
        assert not staging()  # cleaned on the way out
        assert not _processes_naming(str(out))  # the link writer went with it
    # the next run clears what a killed run left and completes
    r = run_cli("-i", str(slow_corpus), "-o", str(out), "--cache", str(cache), "-a", "ahash_16", "-t", "0:20:1", "-q")
    assert r.returncode == 0, r.stderr
    _complete(out)
    assert not staging()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_held_back_during_the_swap_says_the_new_output_is_in_place(corpus, tmp_path, monkeypatch,
                                                                            capsys, sig):
    """The swap of the trees runs with signals blocked; one that comes then is raised just
    after, when the new tree is in place. Its line must say so: "the previous output is
    unchanged" would send the user looking for a tree that is gone."""
    import mhc.output
    from mhc.cli import main

    out, cache = tmp_path / "out", tmp_path / "cache.sqlite"
    common = ("-i", str(corpus), "-o", str(out), "--cache", str(cache), "-a", "phash_8", "-q")
    assert main([*common, "-t", "0"]) == 0
    exchange = mhc.output.exchange

    def signalled_exchange(a, b):  # the signal arrives in the blocked section, as a Ctrl-C would
        os.kill(os.getpid(), sig)
        return exchange(a, b)

    monkeypatch.setattr(mhc.output, "exchange", signalled_exchange)
    capsys.readouterr()
    assert main([*common, "-t", "3"]) == STOPPED[sig][0]
    err = capsys.readouterr().err
    assert err.startswith(STOPPED[sig][1]) and "new output was already in place and is complete" in err, err
    assert "unchanged" not in err and len(err.strip().splitlines()) == 1
    summary = _complete(out)
    assert [t["threshold"] for t in summary["algorithms"]["phash_8"]["thresholds"]] == [3]  # the new tree
    assert not list(tmp_path.glob(".out.mhc-staging-*"))
    assert gone_soon(tmp_path, ".out.mhc-old-*")  # the old tree is removed as after any run


def test_a_signal_held_back_while_the_swap_fails_leaves_the_old_tree(corpus, tmp_path, monkeypatch):
    """A Ctrl-C held back during a swap that then fails (the disk filled): the changes are
    undone first, then the interrupt is raised as an ordinary one (the old tree is whole)."""
    import errno

    import mhc.output

    o = dict(input=corpus, output=tmp_path / "out", cache=tmp_path / "c.sqlite", algorithms=["phash_8"], workers=1)
    run(Options(thresholds="0", **o))
    before = tree_digest(tmp_path / "out")
    exchange = mhc.output.exchange

    def failing_exchange(a, b):
        os.kill(os.getpid(), signal.SIGINT)
        raise OSError(errno.ENOSPC, "No space left on device", str(a))

    monkeypatch.setattr(mhc.output, "exchange", failing_exchange)
    with pytest.raises(KeyboardInterrupt) as e:
        run(Options(thresholds="0:1:1", **o), background_cleanup=False)
    assert not getattr(e.value, "output_replaced", False)
    assert tree_digest(tmp_path / "out") == before
    monkeypatch.setattr(mhc.output, "exchange", exchange)
    # in a thread that is not the main one, Python runs no signal handler: nothing to hold
    import threading

    done = []
    t = threading.Thread(target=lambda: done.append(run(Options(thresholds="1", **o), background_cleanup=False)))
    t.start()
    t.join(120)
    assert done and _complete(tmp_path / "out")


def test_two_runs_on_one_output_do_not_interleave(corpus, tmp_path):
    out = tmp_path / "out"
    with OutputFolder(out, corpus):
        r = run_cli("-i", str(corpus), "-o", str(out), "-a", "phash_8", "-q")
    assert r.returncode == 3  # the machine refused: a lock held by another run
    assert "another mhc run" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def test_lock_files_do_not_pile_up(corpus, tmp_path, monkeypatch):
    """One lock file per output ever written stayed in mhc's cache folder. It is removed as
    the lock is let go; a run that opened it just before takes the new file instead."""
    from mhc.output import lock_path

    outs = [tmp_path / f"out{k}" for k in range(3)]
    for out in outs:
        with OutputFolder(out, corpus):
            assert lock_path(out).exists()
            r = run_cli("-i", str(corpus), "-o", str(out), "-a", "phash_8", "-q")
            assert r.returncode == 3 and "another mhc run" in r.stderr  # still a lock while held
        assert not lock_path(out).exists()
        assert run_cli("-i", str(corpus), "-o", str(out), "-a", "phash_8", "-q").returncode == 0
        assert not lock_path(out).exists()
    # a run that opened the lock file just before its holder removed it must not keep a lock
    # on the removed file (then a third run would take the new one: two writers)
    import fcntl

    import mhc.output

    out = outs[0]
    holder = OutputFolder(out, corpus).__enter__()
    real_flock, released = fcntl.flock, []

    def flock(fd, op):
        if op & fcntl.LOCK_EX and not released:  # the holder lets go between this open and flock
            released.append(holder.__exit__(None, None, None))
        return real_flock(fd, op)

    monkeypatch.setattr(mhc.output.fcntl, "flock", flock)
    late = OutputFolder(out, corpus).__enter__()
    monkeypatch.setattr(mhc.output.fcntl, "flock", real_flock)
    try:
        assert released and os.stat(lock_path(out)).st_ino == os.fstat(late._lock_fd).st_ino
        r = run_cli("-i", str(corpus), "-o", str(out), "-a", "phash_8", "-q")
        assert r.returncode == 3 and "another mhc run" in r.stderr, r.stderr
    finally:
        late.__exit__(None, None, None)
    assert not lock_path(out).exists()


def test_clearing_never_follows_symlinks_out_of_the_output(corpus, tmp_path):
    out = tmp_path / "out"
    o = dict(input=corpus, output=out, algorithms=["phash_8"], workers=1)
    run(Options(thresholds="0:1:1", **o))
    # a directory symlink among the cluster folders, pointing at the user's photos
    thr = next((out / "phash_8").iterdir())
    os.symlink(corpus, thr / "evil")
    before = tree_digest(corpus)
    with pytest.raises(MhcError, match="mhc did not make"):  # that folder would be replaced
        run(Options(thresholds="5", **o), background_cleanup=False)
    assert (thr / "evil").is_symlink() and tree_digest(corpus) == before
    # the same folder, unchanged, is kept as it is (with what the user put there)
    run(Options(thresholds="0:1:1", **o), background_cleanup=False)
    assert (thr / "evil").is_symlink() and tree_digest(corpus) == before
    (thr / "evil").unlink()
    cluster = next(d for d in sorted(thr.iterdir()) if not d.name.startswith("unclustered"))
    os.symlink(corpus, cluster / "evil")  # a link where links belong, but not one mhc made
    with pytest.raises(MhcError, match="mhc did not make"):
        run(Options(thresholds="5", **o), background_cleanup=False)
    assert tree_digest(corpus) == before


def test_foreign_file_in_an_mhc_output_is_never_deleted(corpus, tmp_path):
    out = tmp_path / "out"
    run(Options(input=corpus, output=out, algorithms=["phash_8"], thresholds="0", workers=1))
    note = out / "phash_8" / "my notes.txt"
    note.write_text("mine")
    with pytest.raises(MhcError, match="move it out"):
        run(Options(input=corpus, output=out, algorithms=["phash_8"], thresholds="1", workers=1))
    assert note.read_text() == "mine"


def test_everything_mhc_did_not_make_is_named_in_one_refusal(corpus, tmp_path):
    """A viewer leaves Thumbs.db or .DS_Store in each folder it shows. Refused one entry at a
    time, 20 of them took 20 runs to find; now one line says how many and where."""
    out = tmp_path / "out"
    o = dict(input=corpus, output=out, algorithms=["phash_8"], thresholds="0:6:1", workers=1)
    run(Options(**o))
    junk = [next(d for d in sorted(t.iterdir()) if not d.name.startswith("unclustered")) / "Thumbs.db"
            for t in sorted((out / "phash_8").iterdir())] + [next((out / "phash_8").iterdir()) / ".DS_Store"]
    for p in junk:
        p.write_text("a viewer's")
    before = tree_digest(out)
    with pytest.raises(MhcError) as e:  # --link hardlink: every folder would be written anew
        run(Options(link="hardlink", **o), background_cleanup=False)
    said = str(e.value)
    assert f"holds {len(junk)} entries mhc did not make where it replaces things, e.g. " in said
    assert said.count("Thumbs.db") + said.count(".DS_Store") == 3  # three examples, one line
    assert tree_digest(out) == before
    for p in junk:
        p.unlink()
    run(Options(link="hardlink", **o), background_cleanup=False)


# -- property tests -------------------------------------------------------------
ALGOS = [Algorithm("phash", 8), Algorithm("dhash", 16), Algorithm("ahash", 12), Algorithm("colorhash", 3)]


@given(st.sampled_from(ALGOS), st.integers(0, 300), st.integers(0, 300), st.integers(1, 50))
def test_bit_ranges_are_inclusive_and_stepped(algo, start, stop, step):
    spec = f"{start}:{stop}:{step}"
    if stop < start or start > algo.bits:
        with pytest.raises(UsageError):
            parse_thresholds(spec, algo)
        return
    values = parse_thresholds(spec, algo)
    expected = list(range(start, min(stop, algo.bits) + 1, step))  # STOP is clipped to the bits
    assert values == expected


@given(st.sampled_from(ALGOS), st.floats(0, 100), st.floats(0, 100), st.floats(0.1, 50))
def test_percent_ranges_are_ascending_bits(algo, a, b, step):
    a, b, step = round(a, 3), round(b, 3), round(step, 3)
    spec = f"{a:.3f}%:{b:.3f}%:{step:.3f}%"
    if b < a:
        with pytest.raises(UsageError):
            parse_thresholds(spec, algo)
        return
    try:
        values = parse_thresholds(spec, algo)
    except UsageError:
        assert float(f"{b:.3f}") < float(f"{a:.3f}")
        return
    assert values == sorted(set(values)) and all(0 <= v <= algo.bits for v in values)
    assert values[0] == round(float(f"{a:.3f}") * algo.bits / 100)


@given(st.lists(st.tuples(st.integers(0, 80), st.integers(0, 80), st.integers(1, 9)), min_size=1, max_size=5))
def test_a_list_of_ranges_is_the_union_of_its_items(items):
    """-t 2,5,10 or 0:4:1,8,16: the folders to compare, picked by hand (a list was refused
    as "not START:STOP:STEP")."""
    algo = ALGOS[0]
    specs = [f"{a}:{max(a, b)}:{s}" if k % 2 else str(a) for k, (a, b, s) in enumerate(items)]
    fits = [sp for sp in specs if int(sp.partition(":")[0]) <= algo.bits]  # (a START past the bits is refused)
    wanted = sorted(set().union(*(parse_thresholds(sp, algo) for sp in fits)))
    if fits == specs:
        assert parse_thresholds(" , ".join(specs), algo) == wanted
    else:
        with pytest.raises(UsageError):
            parse_thresholds(",".join(specs), algo)
    for bad in ("1,,3", ",", "2,"):
        with pytest.raises(UsageError, match="has an empty item"):
            parse_thresholds(bad, algo)


@given(st.text(max_size=30))
def test_any_threshold_text_parses_or_is_refused_clearly(text):
    try:
        values = parse_thresholds(text, ALGOS[0])
    except UsageError as e:
        assert "--thresholds" in str(e)
    else:
        assert values and all(isinstance(v, int) for v in values)


@given(st.text(max_size=30))
def test_any_algorithm_text_parses_or_is_refused_clearly(text):
    try:
        algo = parse_algorithm(text)
    except UsageError as e:
        assert str(e)
    else:
        assert algo.key == f"{algo.name}_{algo.size}" and algo.bits > 0


@given(st.lists(st.text(max_size=20), max_size=4))
def test_any_list_of_algorithm_texts_parses_or_is_refused_clearly(texts):
    from mhc.algorithms import parse_algorithms

    try:
        algos = parse_algorithms(texts)
    except UsageError as e:
        assert str(e)
    else:  # (an empty list is the default set)
        assert algos and len({a.key for a in algos}) == len(algos)


names = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0/"), min_size=1, max_size=300)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(names, st.sampled_from(["0f0f", "ffff", "0000"])), min_size=1, max_size=12))
def test_link_names_are_unique_safe_and_round_trip(tmp_path_factory, items):
    base = tmp_path_factory.mktemp("links")
    paths = []
    for k, (name, _) in enumerate(items):
        if name in (".", ".."):
            name = name + "x"
        # keep real file names legal on this filesystem (255 bytes)
        while len(os.fsencode(name)) > 200:
            name = name[:-1]
        d = base / f"d{k}"
        d.mkdir()
        f = d / name
        f.write_bytes(b"x")
        paths.append(str(f))
    for naming in (1, 2, 3, 4):  # the links' (1, 3), and a tree of copies' (2, 4: any drive's names)
        links = unique_link_names(paths, [hx for _, hx in items], naming)
        assert len({n.casefold() for n in links}) == len(links)
        if naming >= 3:  # one name on a Mac's filesystem is one name here too
            assert len({unicodedata.normalize("NFD", unicodedata.normalize("NFD", n).casefold())
                        for n in links}) == len(links), links
        out = base / f"out{naming}"
        out.mkdir()
        for path, link in zip(paths, links):
            assert not set(link) & set("/\0\n" if naming in (1, 3) else '/\0\n\\":*?<>|')
            assert naming in (1, 3) or link.encode("utf-8")
            assert len(os.fsencode(link)) <= 255 and link not in (".", "..")
            os.symlink(path, out / link)
        for path, link in zip(paths, links):
            assert os.readlink(out / link) == path and (out / link).read_bytes() == b"x"


def test_link_name_keeps_stem_and_extension():
    assert link_name("/a/b/IMG 0042.JPG", "c3d1") == "IMG 0042_c3d1.JPG"
    assert link_name("/a/two\nlines.jpg", "00") == "two_lines_00.jpg"
    assert link_name("/a/" + "é" * 200 + ".png", "ab").endswith("_ab.png")
    assert link_name("/a/12:00:00 <draft>?.jpg", "00") == "12:00:00 <draft>?_00.jpg"  # the original stem
    # a tree of copies (--link copy, naming 2): nothing a FAT, exFAT or Windows drive refuses
    assert link_name("/a/12:00:00 <draft>?.jpg", "00", naming=2) == "12_00_00 _draft___00.jpg"
    assert link_name(os.fsdecode(b"/a/caf\xe9.jpg"), "00", naming=2) == "caf__00.jpg"


@pytest.mark.parametrize("link, change", [("copy", "nothing"), ("copy", "a file added"),
                                          ("symlink", "nothing"), ("symlink", "a file added")])
def test_an_output_whose_links_an_older_mhc_named_is_known_by_those_names(tmp_path, monkeypatch, link, change):
    """A tree of copies' names lost ':' and bytes that are not UTF-8 (naming 2): an older
    mhc's tree must still be known as mhc's, its links by their old names (a rerun after the
    upgrade refused "117 entries mhc did not make"), and renamed; symlink trees keep their
    names (naming 1, the original stems), whether rewritten or patched."""
    import mhc.names
    import mhc.summary
    from invariants import check

    inp, out = tmp_path / "in", tmp_path / "out"
    for k, name in enumerate(["12:00:00.jpg", os.fsdecode(b"caf\xe9.jpg"), "plain.jpg", "other.jpg"]):
        save(photo(k // 2, (160, 120)), inp / name)
    opts = dict(input=inp, output=out, algorithms=["phash_8", "dhash_8"], cache=tmp_path / "c.sqlite", workers=1,
                link=link)
    with monkeypatch.context() as m:  # the older mhc: names of naming 1 whatever the link, no "link_names" written
        m.setattr(mhc.names, "unique_link_names", lambda p, h, naming=1: unique_link_names(p, h, 1))
        m.setattr(mhc.summary, "naming_for", lambda mode: None)
        run(Options(**opts))
    summary = json.loads((out / "summary.json").read_text())
    for entry in summary["algorithms"].values():
        assert entry.pop("link_names") is None
    (out / "summary.json").write_text(json.dumps(summary))
    old_names = sorted(["12:00:00_cd67ac401f0f69b4.jpg", os.fsdecode(b"caf\xe9_cd67ac401f0f69b4.jpg")])
    assert sorted(p.name for p in (out / "phash_8").glob("thr_000_*/001_2/*")) == old_names
    if change == "a file added":
        save(photo(9, (160, 120)), inp / "new.jpg")
    res = run(Options(**opts))
    assert check(out, readable=set(res.files)) == []
    assert sorted(p.name for p in (out / "phash_8").glob("thr_000_*/001_2/*")) == (
        ["12_00_00_cd67ac401f0f69b4.jpg", "caf__cd67ac401f0f69b4.jpg"] if link == "copy" else old_names)
    assert any(":" in p.name for p in out.rglob("*")) == (link == "symlink")


@pytest.mark.parametrize("link", ["symlink", "copy"])
def test_names_that_differ_only_in_unicode_normalization_get_two_link_names(tmp_path, monkeypatch, link):
    """A Mac writes "café" with a combining accent, most other systems precomposed: two
    copies of one picture under the two names got link names that macOS's filesystems (APFS,
    HFS+) hold as one, so the second could not be made there. An output an older mhc named
    is rewritten under the new names, not refused."""
    import mhc.names
    import mhc.summary
    import mhc.writing
    from invariants import check

    inp, out = tmp_path / "in", tmp_path / "out"
    composed, decomposed = "caf\u00e9.jpg", "cafe\u0301.jpg"
    save(photo(1, (160, 120)), inp / "from linux" / composed)
    save(photo(1, (160, 120)), inp / "from a mac" / decomposed)
    save(photo(2, (160, 120)), inp / "other.jpg")
    opts = dict(input=inp, output=out, algorithms=["phash_8"], cache=tmp_path / "c.sqlite", workers=1, link=link)
    older = {"symlink": 1, "copy": 2}[link]
    with monkeypatch.context() as m:  # the older mhc: namings 1 and 2
        m.setattr(mhc.summary, "naming_for", lambda mode: older)
        m.setattr(mhc.names, "naming_for", lambda mode: older)
        run(Options(**opts))
    cluster = lambda: sorted(p.name for p in (out / "phash_8").glob("thr_000_*/001_2/*"))
    before = [unicodedata.normalize("NFC", n) for n in cluster()]  # one name on a Mac
    assert len(before) == 2 and before[0] == before[1] and before[0].startswith("caf\u00e9_"), before
    res = run(Options(**opts))
    assert check(out, readable=set(res.files)) == []
    names = cluster()
    assert len({unicodedata.normalize("NFC", n) for n in names}) == 2, names
    assert json.loads((out / "summary.json").read_text())["algorithms"]["phash_8"]["link_names"] == older + 2
    (folder,) = (out / "phash_8").glob("thr_000_*/001_2")
    originals = {str(inp / "from linux" / composed), str(inp / "from a mac" / decomposed)}
    if link == "symlink":
        assert {os.readlink(folder / n) for n in names} == originals
    else:
        assert sorted((folder / n).read_bytes() for n in names) == sorted(Path(o).read_bytes() for o in originals)


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_the_link_probe_removes_only_what_it_made(tmp_path, link):
    """The check that the output's filesystem holds links makes one beside the output and
    removes it: a file already there under the probe's names is the user's, and stays."""
    from mhc.paths import _check_links

    probe = tmp_path / f".mhc-{link}-probe-{os.getpid()}"
    theirs = [probe, tmp_path / f"{probe.name}.file"]
    for path in theirs:
        path.write_text("not mhc's")
    _check_links(tmp_path, link)
    assert [p.read_text() for p in theirs] == ["not mhc's"] * 2
    for path in theirs:
        path.unlink()
    _check_links(tmp_path, link)
    assert list(tmp_path.iterdir()) == []  # what it made, it removed


def test_an_old_tree_being_removed_is_left_to_its_remover(tmp_path):
    """Two runs back to back (in one process, as a script calling run() twice does): the
    second run's recovery must neither wait for nor race with the detached remover of the
    first run's old tree (CI once saw FileNotFoundError from exactly that race)."""
    import fcntl

    from mhc.ownership import remove_tree

    inp = tmp_path / "in"
    for i in range(3):
        save(photo(i), inp / f"{i}.png")
    o = dict(input=inp, output=tmp_path / "out", algorithms=["phash_8"], workers=1)
    run(Options(**o))
    old = tmp_path / ".out.mhc-old-1-2"  # as if a remover were still busy with it
    (old / "phash_8" / "thr_000_unclustered_3").mkdir(parents=True)
    (old / ".mhc-output").write_text("")
    fd = os.open(old, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        run(Options(**o))
        assert (old / "phash_8").is_dir()  # left to the process holding the lock
    finally:
        os.close(fd)
    run(Options(**o))
    assert not old.exists()  # nobody removing it any more: recovery finishes the job
    # removal tolerates entries vanishing under it (another remover got there first)
    tree = tmp_path / "t"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "x").write_text("")

    def vanish(p: str) -> bool:
        if p.endswith("/a"):
            remove_tree(Path(p))
        return False

    assert remove_tree(tree, vanish) == [] and not tree.exists()


# -- the links made in a forked child while the report is rendered (mhc.forked) ----------------
def _child_writes(folder: Path) -> None:
    folder.mkdir()
    for k in range(10**9):
        (folder / f"f{k}").write_text("x")
        time.sleep(0.001)


def test_forked_child_failures_come_back_as_they_were(tmp_path):
    from mhc.errors import EnvironmentFault
    from mhc.forked import Forked, available

    if not available():
        pytest.skip("fork is used on Linux only")
    odd = str(tmp_path / "caf\udce9")  # a name that is not UTF-8 survives the trip

    def enospc():
        raise OSError(28, "No space left on device", odd, None, str(tmp_path / "link"))
    f = Forked(enospc)
    with pytest.raises(OSError) as e:
        f.wait()
    assert (e.value.errno, e.value.filename, e.value.filename2) == (28, odd, str(tmp_path / "link"))

    def fault():
        raise EnvironmentFault("cannot write the output (x): the disk is full")
    with pytest.raises(EnvironmentFault, match="the disk is full"):
        Forked(fault).wait()

    with pytest.raises(EnvironmentFault, match=r"ended unexpectedly \(signal 9\)"):
        Forked(lambda: os.kill(os.getpid(), signal.SIGKILL)).wait()

    Forked(lambda: None).wait()  # success: nothing raised


def test_forked_child_is_stopped_before_stop_returns(tmp_path):
    from mhc.forked import Forked, available

    if not available():
        pytest.skip("fork is used on Linux only")
    folder = tmp_path / "w"
    f = Forked(lambda: _child_writes(folder))
    _wait_for(lambda: folder.exists() and len(list(folder.iterdir())) > 5)
    f.stop()
    n = len(list(folder.iterdir()))
    time.sleep(0.3)
    assert len(list(folder.iterdir())) == n  # nothing writes after stop()


def test_interrupted_wait_leaves_the_child_to_stop(tmp_path):
    """Ctrl-C while waiting for the child: stop() kills it, not wait() letting it finish."""
    from mhc.forked import Forked, available

    if not available():
        pytest.skip("fork is used on Linux only")
    folder = tmp_path / "w"
    f = Forked(lambda: _child_writes(folder))

    def interrupt(*_):
        raise KeyboardInterrupt
    old = signal.signal(signal.SIGALRM, interrupt)
    t = time.monotonic()
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(KeyboardInterrupt):
            f.wait()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        f.stop()
    assert time.monotonic() - t < 5  # the child (which never ends on its own) was killed
    n = len(list(folder.iterdir()))
    time.sleep(0.3)
    assert len(list(folder.iterdir())) == n


def test_links_made_aside_give_the_same_tree(corpus, tmp_path, monkeypatch):
    import mhc.forked
    import mhc.writing

    if not mhc.forked.available():
        pytest.skip("fork is used on Linux only")
    made = []
    monkeypatch.setattr(mhc.forked, "Forked", lambda fn, cls=mhc.forked.Forked: made.append(1) or cls(fn))
    monkeypatch.setattr(mhc.writing, "FORK_MIN_LINKS", 1)
    o = dict(input=corpus, algorithms=["phash_8", "dhash_8"], thresholds="0:12:2", workers=1)
    run(Options(output=tmp_path / "aside", **o))
    assert made == [1]  # the links were made in a child
    monkeypatch.setattr(mhc.writing, "FORK_MAX_LINKS", 0)  # the same run, links made in this process
    run(Options(output=tmp_path / "here", **o))
    assert made == [1]
    aside, here = tree_digest(tmp_path / "aside"), tree_digest(tmp_path / "here")
    links = {k: v for k, v in aside.items() if v.startswith("link:")}
    assert len(links) > 50
    assert links == {k: v for k, v in here.items() if v.startswith("link:")}
    assert {k for k, v in aside.items() if v == "dir"} == {k for k, v in here.items() if v == "dir"}


def test_a_killed_link_writer_costs_the_run_nothing(corpus, tmp_path, monkeypatch, caplog):
    """The child making the links killed half-way (the out-of-memory killer, a stray kill -9)
    ended the run: exit 3, "run again". Its folders are all new, in mhc's staging folder, so
    they are made again in the run's own process, beside the folders kept from the last run."""
    import mhc.forked
    import mhc.writing

    if not mhc.forked.available():
        pytest.skip("fork is used on Linux only")
    parent, real = os.getpid(), mhc.writing.make_folders

    def dies_half_way(staging, plans, files, *rest, **kw):
        if os.getpid() != parent:  # in the child: half the first plan's folders, then killed
            plan = plans[0]
            real(staging, [dataclasses.replace(plan, write=plan.write[:len(plan.write) // 2], patches=[])],
                 files, *rest, **kw)
            os.kill(os.getpid(), signal.SIGKILL)
        return real(staging, plans, files, *rest, **kw)

    monkeypatch.setattr(mhc.writing, "FORK_MIN_LINKS", 1)
    o = dict(input=corpus, thresholds="0:12:2", workers=1)
    for out in (tmp_path / "aside", tmp_path / "here"):
        run(Options(output=out, algorithms=["phash_8"], **o))
    monkeypatch.setattr(mhc.writing, "make_folders", dies_half_way)
    with caplog.at_level(logging.WARNING):
        run(Options(output=tmp_path / "aside", algorithms=["phash_8", "dhash_8"], **o))  # phash_8's folders kept
    assert [r.getMessage() for r in caplog.records] == [
        "the process making the output's links ended unexpectedly (signal 9); made the links in this process instead"]
    monkeypatch.setattr(mhc.writing, "FORK_MAX_LINKS", 0)  # the same run, links made in this process
    run(Options(output=tmp_path / "here", algorithms=["phash_8", "dhash_8"], **o))
    aside, here = tree_digest(tmp_path / "aside"), tree_digest(tmp_path / "here")
    links = {k: v for k, v in aside.items() if v.startswith("link:")}
    assert len([k for k in links if k.startswith("dhash_8")]) > 50
    assert links == {k: v for k, v in here.items() if v.startswith("link:")}
    assert {k for k, v in aside.items() if v == "dir"} == {k for k, v in here.items() if v == "dir"}
    assert not list(tmp_path.glob(".aside.mhc-staging-*"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupt_while_the_report_renders_beside_the_links(many_small, tmp_path, sig):
    out, cache = tmp_path / "out", tmp_path / "cache.sqlite"
    assert run_cli("-i", str(many_small), "-o", str(out), "--cache", str(cache), "-a", "dhash_8", "-t", "0",
                   "-q").returncode == 0
    before = tree_digest(out)
    assert run_cli("-i", str(many_small), "-o", str(tmp_path / "scratch"), "--cache", str(cache), "-a", "ahash_16",
                   "-t", "0", "-q").returncode == 0  # hashes cached: the next run goes straight to writing
    p = _start("-i", str(many_small), "-o", str(out), "--cache", str(cache), "-a", "ahash_16", "-t", "0:256:1", "-q")
    staging = lambda: list(tmp_path.glob(".out.mhc-staging-*"))
    _wait_for(lambda: any((s / "report").exists() for s in staging()) or p.poll() is not None)
    assert p.poll() is None, "the run ended before it was interrupted; make it write more"
    p.send_signal(sig)
    p.communicate(timeout=60)
    assert p.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL)
    time.sleep(0.5)  # a child that outlived its parent would still be writing: it must not be
    assert tree_digest(out) == before
    if sig == signal.SIGINT:
        assert not staging()
    left = {s: tree_digest(s) for s in staging()}
    time.sleep(0.5)
    assert {s: tree_digest(s) for s in staging()} == left  # nothing writes into what was left
    r = run_cli("-i", str(many_small), "-o", str(out), "--cache", str(cache), "-a", "ahash_16", "-t", "0:20:1", "-q")
    assert r.returncode == 0, r.stderr
    _complete(out)
    assert not staging()


def test_a_pool_never_forks_more_than_4_processes_per_cpu(corpus, tmp_path):
    """Python's pool forks all its processes at once: -j 100000 forked until the machine
    ran out, and a SIGTERM in the middle hung on a half-made worker. Capped, with one line."""
    from mhc.pool import PROCESSES_PER_CPU, pool_size

    cpus = os.cpu_count() or 1
    assert pool_size(0, 10_000) == cpus and pool_size(3, 2) == 2 and pool_size(5, 0) == 1
    assert pool_size(100_000, 10**6) == PROCESSES_PER_CPU * cpus
    many = PROCESSES_PER_CPU * cpus * 8  # harmless even uncapped
    r = run_cli("-i", str(corpus), "-o", str(tmp_path / "o"), "--cache", str(tmp_path / "c.sqlite"), "-j", str(many),
                "-a", "phash_8", "-q")
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == f"-j {many}: at most {PROCESSES_PER_CPU * cpus} processes are started " \
        f"({PROCESSES_PER_CPU} per CPU on {cpus} CPUs): hashing is CPU-bound"


def test_sigterm_in_a_child_before_it_sets_its_handler_ends_it_quietly():
    """The command line's SIGTERM handler raises in the main process only: a forked child
    hit between fork and its own handler raised it inside Python's after-fork hooks
    ("Exception ignored in _after_fork ... Terminated", a traceback on the terminal)."""
    code = (
        "import functools, os, signal, time\n"
        "from mhc.stopping import _on_signal\n"
        "signal.signal(signal.SIGTERM, functools.partial(_on_signal, os.getpid()))\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(5)\n"
        "    os._exit(0)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "print(os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.stdout.strip() == "True" and r.stderr == "", r.stderr


def test_a_home_folder_as_input_is_never_written_to(tmp_path):
    """`mhc -i ~`: mhc's user cache folder (~/.cache/mhc) lies in the input. The default
    cache there is refused with what to do; with --cache elsewhere, the output's lock was
    still made in ~/.cache/mhc/locks; with --no-cache, reading the "not a duplicate" marks
    made SQLite's -wal and -shm files beside the cache. Now the tree is left as it was."""
    home = tmp_path / "home"
    save(photo(21), home / "Pictures" / "a.jpg")
    shutil.copy(home / "Pictures" / "a.jpg", home / "Pictures" / "b.jpg")
    save(photo(22), home / "Pictures" / "c.jpg")
    env = {"HOME": str(home), "XDG_CACHE_HOME": ""}
    pics = home / "Pictures"
    # a user cache made earlier (a run on ~/Pictures, and a marked pair), closed and whole
    assert run_cli("-i", str(pics), "-o", str(tmp_path / "first"), "-a", "phash_8", "-q", env=env).returncode == 0
    assert run_cli("ignore", str(pics / "a.jpg"), str(pics / "b.jpg"), env=env).returncode == 0
    assert (home / ".cache" / "mhc" / "hashes.sqlite").is_file()
    before = tree_digest(home)
    out = tmp_path / "out"
    r = run_cli("-i", str(home), "-o", str(out), "-a", "phash_8", env=env)
    assert r.returncode == 2 and "the default hash cache" in r.stderr and "--cache FILE outside it" in r.stderr
    assert tree_digest(home) == before and not out.exists()
    r = run_cli("-i", str(home), "-o", str(out), "-a", "phash_8", "--cache", str(tmp_path / "c.sqlite"), env=env)
    assert r.returncode == 0, r.stderr
    assert tree_digest(home) == before  # no locks/ folder in ~/.cache/mhc
    r = run_cli("-i", str(home), "-o", str(out), "-a", "phash_8", "-t", "0", "--no-cache", env=env)
    assert r.returncode == 0, r.stderr
    assert tree_digest(home) == before  # no -wal or -shm beside the cache
    clusters = [sorted(p.name.split("_")[0] for p in c.iterdir()) for c in (out / "phash_8").glob("thr_000_*/0*")]
    assert ["a", "b"] not in clusters  # the marked pair was read all the same
    assert not list(tmp_path.glob(".out.mhc-lock"))  # the lock beside the output went with the run


def _files_in(out: Path, name: str) -> list[Path]:
    return sorted(p for p in out.rglob(name) if p.is_file())


@pytest.mark.parametrize("link", ["copy", "hardlink"])
def test_a_copy_edited_in_the_output_is_never_deleted_with_its_folder(tmp_path, link):
    """A tree of copies (or hard links) is the user's to browse, and an image viewer edits
    what it shows: rotated and saved, a copy became the user's work. The next run that
    rewrote its folder deleted it, with exit status 0. Now it is refused by name, in one
    line, before anything changes; moved out of the output, the run goes on."""
    from PIL import Image

    inp, out = tmp_path / "in", tmp_path / "out"
    for k in range(3):
        p = save(photo(k % 2, (320, 240)), inp / f"p{k}.jpg")
        os.utime(p, (time.time() - 3600, time.time() - 3600))  # photos of an hour ago
    args = ["-i", str(inp), "-o", str(out), "--no-cache", "-a", "phash_8", "-t", "0:8:4", "--link", link, "-q"]
    assert run_cli(*args).returncode == 0
    edited = _files_in(out, "p0_*.jpg")[1]  # one of its copies (or hard links), in one threshold folder
    if link == "copy":  # a viewer that rewrites the file in place
        Image.open(edited).rotate(90, expand=True).save(edited, quality=95)
    else:  # a viewer that writes a new file and renames it over the old one: the original is untouched
        Image.open(edited).rotate(90, expand=True).save(tmp_path / "new.jpg", quality=95)
        os.replace(tmp_path / "new.jpg", edited)
    work = edited.read_bytes()
    save(photo(5, (320, 240)), inp / "new.jpg")  # a new file: every folder of the tree is written anew
    tree = lambda: {p: d for p, d in tree_digest(out).items() if not p.startswith(".mhc")}  # (thumbnails made)
    before = tree()
    r = run_cli(*args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == (f"Error: the output folder holds {edited}, a file mhc made that was changed since "
                                f"(edited in a viewer?); mhc would delete it with its folder: move it out of the "
                                f"output folder, then run again")
    assert tree() == before and edited.read_bytes() == work
    shutil.move(edited, tmp_path / "kept.jpg")
    assert run_cli(*args).returncode == 0
    assert (tmp_path / "kept.jpg").read_bytes() == work
    assert len(_files_in(out, "new_*.jpg")) == 3  # (the run went on: in every threshold folder)
    if link == "hardlink":  # edited in place through a hard link: that is the original, nothing to lose
        (inp / "p2.jpg").write_bytes((inp / "p2.jpg").read_bytes() + b"\0")  # (the folders hold its new size)
        assert run_cli(*args).returncode == 0


def test_copies_are_made_again_when_their_original_changes_with_the_same_hash(tmp_path):
    """A tree of copies holds the files' bytes: an original re-saved without a visible change
    (same hash, e.g. its metadata edited) left every folder as it was, the old copies in it.
    Now the folders are written again with the new bytes; the old copies, as mhc made them,
    go without a word."""
    inp, out = tmp_path / "in", tmp_path / "out"
    for k in range(3):
        save(photo(k, (320, 240)), inp / f"p{k}.png", compress_level=9)
    args = ["-i", str(inp), "-o", str(out), "--no-cache", "-a", "phash_8", "-t", "0:8:4", "--link", "copy", "-q"]
    assert run_cli(*args).returncode == 0
    copies = _files_in(out, "p1_*.png")
    assert len(copies) == 3 and all(c.read_bytes() == (inp / "p1.png").read_bytes() for c in copies)
    save(photo(1, (320, 240)), inp / "p1.png", compress_level=1)  # the same pixels, other bytes
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    copies = _files_in(out, "p1_*.png")
    assert len(copies) == 3 and all(c.read_bytes() == (inp / "p1.png").read_bytes() for c in copies)


def test_the_refusal_names_changed_copies_with_what_mhc_did_not_make_in_one_line():
    from mhc.ownership import NotMade

    assert str(NotMade([], ["/o/a.jpg", "/o/b.jpg"])) == (
        "the output folder holds 2 files mhc made that were changed since, e.g. /o/a.jpg, /o/b.jpg (edited in a "
        "viewer?); mhc would delete them with their folders: move them out of the output folder, then run again")
    assert str(NotMade(["/o/Thumbs.db"], ["/o/a.jpg"])) == (
        "the output folder holds /o/Thumbs.db, which mhc did not make; move it out of the output folder, and also "
        "/o/a.jpg, a file mhc made that was changed since (mhc only replaces what it made), then run again")


def test_on_a_filesystem_that_sets_its_own_times_only_copies_changed_after_the_last_run_are_refused(tmp_path,
                                                                                                  monkeypatch):
    """Some filesystems (a phone over MTP, some cloud drives through FUSE) do not keep the
    time shutil.copy2 sets: there every copy has the time it was made, and all of them would
    look edited. mhc tries the filesystem once (a file of its own beside the output); on
    one that sets its own times, a copy is the user's if it changed after the last run."""
    import mhc.writing
    from mhc.ownership import NotMade, keeps_times

    assert keeps_times(tmp_path) and not list(tmp_path.iterdir())  # this one keeps them; no probe left
    inp, out = tmp_path / "in", tmp_path / "out"
    for k in range(3):
        p = save(photo(k % 2, (320, 240)), inp / f"p{k}.jpg")
        os.utime(p, (time.time() - 3600, time.time() - 3600))
    o = Options(input=inp, output=out, no_cache=True, algorithms=["phash_8"], thresholds="0:8:4", link="copy",
                workers=1)
    run(o, background_cleanup=False)
    written = (out / ".mhc-output").stat().st_mtime_ns
    copies = [p for p in out.rglob("*.jpg") if p.is_file() and ".mhc" not in p.parts]
    for c in copies:  # as such a filesystem leaves them: the time each was made
        os.utime(c, ns=(written - 10**9, written - 10**9))
    monkeypatch.setattr(mhc.writing, "keeps_times", lambda folder: False)  # (the probe's answer there)
    edited = sorted(c for c in copies if c.name.startswith("p0_"))[0]
    os.utime(edited, ns=(written + 5 * 10**9, written + 5 * 10**9))  # changed after the run
    save(photo(5, (320, 240)), inp / "new.jpg")
    with pytest.raises(NotMade) as e:
        run(o, background_cleanup=False)
    assert e.value.changed == [str(edited)] and e.value.paths == []
    os.utime(edited, ns=(written - 10**9, written - 10**9))
    run(o, background_cleanup=False)  # every other copy was as mhc made it


_SIGNAL_AT = """
import os, signal, sys
import typer.core
import mhc.cli, mhc.terminal

def send(*_):
    os.kill(os.getpid(), getattr(signal, sys.argv[1]))

if sys.argv[2] == "parsing":  # a real signal while click reads the command line
    Command = next(c for c in typer.core.TyperGroup.__mro__ if c.__name__ == "Command")
    reading = Command.make_context
    Command.make_context = lambda self, *a, **k: send() or reading(self, *a, **k)
else:  # ... or while the run's summary is printed, its output complete
    printing = mhc.terminal.print_summary
    mhc.terminal.print_summary = lambda result, console: send() or printing(result, console)
sys.exit(mhc.cli.main(sys.argv[3:]))
"""


@pytest.mark.parametrize("sig, status, said", [("SIGTERM", 143, "Stopped (SIGTERM)."), ("SIGINT", 130, "Interrupted."),
                                               ("SIGHUP", 129, "Stopped (SIGHUP: the terminal closed).")])
def test_a_signal_outside_the_run_itself_has_its_status_and_its_line(corpus, tmp_path, sig, status, said):
    """typer turns a KeyboardInterrupt raised in click's own code into exit status 130 with
    nothing said: SIGTERM and SIGHUP while the command line was read, or while the summary
    was printed, ended 130 in silence (a service manager's `kill` read as a Ctrl-C)."""
    out = tmp_path / "out"
    args = ["-i", str(corpus), "-o", str(out), "--no-cache", "-a", "phash_8"]
    r = subprocess.run([sys.executable, "-c", _SIGNAL_AT, sig, "parsing", *args], capture_output=True, text=True,
                       cwd=ROOT, timeout=300)
    assert (r.returncode, r.stderr) == (status, f"{said} Nothing was done.\n")
    assert not out.exists()
    r = subprocess.run([sys.executable, "-c", _SIGNAL_AT, sig, "printing", *args], capture_output=True, text=True,
                       cwd=ROOT, timeout=300, env={**os.environ, "COLUMNS": "300"})
    assert r.returncode == status, r.stderr
    assert r.stderr.splitlines()[-1] == f"{said} The run had finished; its output is complete: {out}", r.stderr
    assert (out / "summary.json").is_file()


_SIGNAL_WHILE_LOADING = """
import os, signal, sys
sig = getattr(signal, sys.argv[1])
sys.argv = ["cluster.py", *sys.argv[2:]]  # (mhc loaded as the command, as ./cluster.py loads it)
import mhc  # the package, then a signal while the rest of the command line's modules load
os.kill(os.getpid(), sig)
import mhc.cli
sys.exit(mhc.cli.main(sys.argv[1:]))
"""

_SIGNAL_WHILE_BUILDING = """
import os, signal, sys
import typer.main
import mhc.cli
building = typer.main.get_command
typer.main.get_command = lambda app: os.kill(os.getpid(), getattr(signal, sys.argv[1])) or building(app)
sys.exit(mhc.cli.main(sys.argv[2:]))
"""


@pytest.mark.parametrize("sig, status, said", [("SIGTERM", 143, "Stopped (SIGTERM)."), ("SIGINT", 130, "Interrupted."),
                                               ("SIGHUP", 129, "Stopped (SIGHUP: the terminal closed).")])
def test_a_signal_while_the_command_loads_is_one_line(corpus, tmp_path, sig, status, said):
    """The first quarter of a second of `./cluster.py` loads modules: a Ctrl-C there printed a
    traceback of Python's import machinery, and SIGTERM ended it without a word; a signal
    while typer built the commands printed a traceback (mhc.stopping.Terminated)."""
    out = tmp_path / "out"
    args = ["-i", str(corpus), "-o", str(out), "--no-cache", "-a", "phash_8"]
    for code in (_SIGNAL_WHILE_LOADING, _SIGNAL_WHILE_BUILDING):
        r = subprocess.run([sys.executable, "-c", code, sig, *args], capture_output=True, text=True, cwd=ROOT,
                           timeout=300)
        assert (r.returncode, r.stderr) == (status, f"{said} Nothing was done.\n"), code
        assert not out.exists()
    # a program that imports mhc keeps its own handling: a Ctrl-C is its KeyboardInterrupt
    code = ("import os, signal, mhc\ntry:\n    os.kill(os.getpid(), signal.SIGINT)\n"
            "except KeyboardInterrupt:\n    print('mine')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.stdout == "mine\n", r.stderr
