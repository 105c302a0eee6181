"""Pair search and sweep against brute force; Dask; writing options for large collections."""
from __future__ import annotations

import importlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mhc import Options, run
from mhc.pairs import Edges, iter_pairs
from mhc.runner import guided_batches
from mhc.sweep import spanning_forest, sweep

from conftest import photo, run_cli, save, tree_digest

sweep_module = importlib.import_module("mhc.sweep")  # mhc.sweep is also the function's name


def brute_force(codes: np.ndarray, t: int) -> list[list[int]]:
    """Connected components of the all-pairs graph within t (networkx), as sorted lists."""
    n = len(codes)
    bits = np.unpackbits(codes.view(np.uint8), axis=1).astype(np.int16)
    d = (bits[:, None, :] != bits[None, :, :]).sum(axis=2)
    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_edges_from((i, j) for i in range(n) for j in range(i + 1, n) if d[i, j] <= t)
    return sorted(sorted(c) for c in nx.connected_components(g) if len(c) > 1)


@st.composite
def hash_sets(draw):
    words = draw(st.sampled_from([1, 2, 4]))  # 64, 128, 256 bits
    n = draw(st.integers(2, 60))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2**63, (n, words), dtype=np.uint64) | (rng.integers(0, 2, (n, words), dtype=np.uint64) << 63)
    if draw(st.booleans()):  # clustered: copies of a few seeds with a few bits flipped
        seeds = max(1, n // 6)
        for k in range(seeds, n):
            c = codes[k % seeds].copy()
            for _ in range(draw(st.integers(0, words * 8))):
                w = int(rng.integers(0, words))
                c[w] ^= np.uint64(1) << np.uint64(int(rng.integers(0, 64)))
            codes[k] = c
    return codes


@settings(max_examples=60, deadline=None)
@given(hash_sets(), st.data())
def test_partitions_equal_brute_force(codes, data):
    bits = codes.shape[1] * 64
    thresholds = sorted(set(data.draw(st.lists(st.integers(0, bits // 2), min_size=1, max_size=6))))
    method = data.draw(st.sampled_from(["numpy", "faiss", "multihash"]))
    if method == "multihash":  # exact only while every chunk keeps >= 1 bit: radius < bits
        thresholds = [t for t in thresholds if t < bits] or [0]
    merge_at = data.draw(st.sampled_from([1, 7, 4_000_000]))  # fold into the forest often or once
    small = data.draw(st.booleans())  # the forest by union-find in Python, or by scipy
    saved = sweep_module.SMALL_FILES
    sweep_module.SMALL_FILES = saved if small else 0
    try:
        forest = spanning_forest(len(codes), iter_pairs(codes, max(thresholds), method=method), merge_at=merge_at)
    finally:
        sweep_module.SMALL_FILES = saved
    assert len(forest) < len(codes)
    for engine in ("networkx", "scipy", "python"):
        parts = list(sweep(len(codes), forest, thresholds, engine=engine))
        for p in parts:
            got = sorted(sorted(int(i) for i in c) for c in p.clusters)
            assert got == brute_force(codes, p.threshold), (method, p.threshold)
            assert sorted(p.unclustered.tolist() + [i for c in got for i in c]) == list(range(len(codes)))


@given(st.integers(0, 5000), st.integers(1, 16))
def test_guided_batches_cover_every_file_once_and_end_in_single_files(n, workers):
    batches = guided_batches(list(range(n)), workers)
    assert [i for b in batches for i in b] == list(range(n))  # each once, in order
    sizes = [len(b) for b in batches]
    assert all(1 <= s <= 32 for s in sizes)
    assert sizes == sorted(sizes, reverse=True)  # they only shrink
    # the last batches are single files: no worker is left alone with a large one
    assert sizes[-min(n, workers * 8):] == [1] * min(n, workers * 8)


@settings(max_examples=25, deadline=None)
@given(hash_sets(), st.integers(0, 40))
def test_every_method_finds_the_same_pairs(codes, t):
    t = min(t, codes.shape[1] * 64 - 1)
    found = {m: Edges.concat(list(iter_pairs(codes, t, method=m))).sorted() for m in ("numpy", "faiss", "multihash")}
    for m in ("faiss", "multihash"):
        for f in ("i", "j", "d"):
            assert np.array_equal(getattr(found["numpy"], f), getattr(found[m], f)), m


def test_local_dask_cluster_gives_the_same_output(corpus, tmp_path):
    distributed = pytest.importorskip("distributed")
    local = tmp_path / "local"
    run(Options(input=corpus, output=local, algorithms=["phash_8", "dhash_8"], workers=2, no_cache=True))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        res = run(Options(input=corpus, output=tmp_path / "dask", algorithms=["phash_8", "dhash_8"], no_cache=True,
                          dask=cluster.scheduler_address))
    assert res.stats.decoded == len(res.files)
    strip = lambda d: {k: v.split(":")[0] if not v.startswith(("link:", "dir")) else v
                       for k, v in d.items() if not k.startswith((".mhc", "summary", "index", "report"))}
    assert strip(tree_digest(tmp_path / "dask")) == strip(tree_digest(local))
    a = json.loads((local / "summary.json").read_text())["algorithms"]
    b = json.loads((tmp_path / "dask" / "summary.json").read_text())["algorithms"]
    assert a == b


def test_unreachable_dask_scheduler_is_a_clear_error(corpus, tmp_path):
    pytest.importorskip("distributed")
    from mhc import MhcError

    # said at once ("Connection refused"), not after the client's 20 s of retries ("Timed out ...")
    with pytest.raises(MhcError, match=r"cannot reach the Dask scheduler at tcp://127.0.0.1:9 \(Connection refused\)"):
        run(Options(input=corpus, output=tmp_path / "o", algorithms=["phash_8"], dask="tcp://127.0.0.1:9"))


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare (util-linux)")
def test_dask_workers_that_cannot_see_the_input_end_the_run_in_one_line(corpus, tmp_path):
    """A worker on another machine without the input mounted at the same path said "file
    disappeared while scanning" for every file, and the run ended with nothing to cluster,
    exit 0. Here a real `dask worker` runs in its own mount namespace, where an empty
    tmpfs hides the input."""
    distributed = pytest.importorskip("distributed")
    from mhc import EnvironmentFault

    with distributed.LocalCluster(n_workers=0, dashboard_address=None) as cluster, \
            distributed.Client(cluster.scheduler_address) as client:
        worker = subprocess.Popen(["unshare", "-m", "sh", "-c", f'mount -t tmpfs none "{corpus}" && exec '
                                   f'"{Path(sys.executable).parent / "dask"}" worker {cluster.scheduler_address} '
                                   f'--nthreads 1 --no-dashboard'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            client.wait_for_workers(1, timeout=60)
            with pytest.raises(EnvironmentFault, match=r"^the hashing workers cannot see .*, which is here: they must "
                                                       r"see the input at the same path"):
                run(Options(input=corpus, output=tmp_path / "o", algorithms=["phash_8"], no_cache=True,
                            dask=cluster.scheduler_address))
        finally:
            worker.terminate()
            worker.wait(30)
    assert not (tmp_path / "o").exists()


def test_a_dask_scheduler_without_workers_is_said_not_waited_on_forever(corpus, tmp_path, monkeypatch, caplog):
    """Dask holds tasks until a worker joins: with none, the run waited forever."""
    distributed = pytest.importorskip("distributed")
    from mhc import EnvironmentFault, dask_exec

    monkeypatch.setattr(dask_exec, "DASK_WORKER_WAIT", 3.0)
    with distributed.LocalCluster(n_workers=0, dashboard_address=None) as cluster:
        with pytest.raises(EnvironmentFault, match=rf"^the Dask scheduler at {cluster.scheduler_address} has no workers "
                                                   rf"\(none joined in 3 s\); start `dask worker "):
            run(Options(input=corpus, output=tmp_path / "o", algorithms=["phash_8"], no_cache=True,
                        dask=cluster.scheduler_address))
    assert "has no workers yet; waiting up to 3 s for one to join" in caplog.text
    assert not (tmp_path / "o").exists()


def test_a_dask_scheduler_that_stops_mid_run_ends_it_in_one_line(tmp_path):
    """Dask's client cancels every task when it loses its scheduler, and mhc then waited
    forever on the files it retried one by one. A real scheduler and worker run as
    processes; the scheduler is killed once the first batch has come back."""
    pytest.importorskip("distributed")
    import signal
    import socket

    from mhc import EnvironmentFault

    for i in range(36):  # 8 batches of 2 in flight on one worker: most are still queued at the kill
        save(photo(i, (1600, 1200)), tmp_path / "in" / f"p{i:02d}.jpg")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dask = str(Path(sys.executable).parent / "dask")
    address = f"tcp://127.0.0.1:{port}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = subprocess.Popen([dask, "scheduler", "--port", str(port), "--no-dashboard"], **quiet)
    worker = subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--no-dashboard"], **quiet)
    try:
        import distributed

        with distributed.Client(address, timeout=60) as client:
            client.wait_for_workers(1, timeout=60)

        def progress(e):
            if e.stage == "hash" and e.done >= 1 and scheduler.poll() is None:
                scheduler.send_signal(signal.SIGKILL)
                scheduler.wait()

        with pytest.raises(EnvironmentFault, match="^the hashing tasks were cancelled by the executor: the connection "
                                                   "to the Dask scheduler was lost"):
            run(Options(input=tmp_path / "in", output=tmp_path / "o", algorithms=["phash_8"], exact=True,
                        cache=tmp_path / "c.sqlite", dask=address), progress=progress)
    finally:
        for p in (scheduler, worker):
            p.kill()
            p.wait(30)
    assert scheduler.returncode == -signal.SIGKILL and not (tmp_path / "o").exists()


def test_a_run_whose_dask_workers_all_leave_ends_in_one_line(tmp_path, monkeypatch, caplog):
    """Dask holds the tasks of a scheduler left without workers until one joins: a run whose
    only worker was killed mid-run waited forever. A real worker process (no nanny to restart
    it) is killed once the first batch has come back."""
    pytest.importorskip("distributed")
    import distributed

    from mhc import EnvironmentFault, dask_exec

    monkeypatch.setattr(dask_exec, "DASK_WORKER_WAIT", 2.0)
    for i in range(36):
        save(photo(i, (1600, 1200)), tmp_path / "in" / f"p{i:02d}.jpg")
    with distributed.LocalCluster(n_workers=0, dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        worker = subprocess.Popen([str(Path(sys.executable).parent / "dask"), "worker", address, "--no-nanny",
                                   "--nthreads", "1", "--no-dashboard"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with distributed.Client(address, timeout=60) as client:
                client.wait_for_workers(1, timeout=60)

            def progress(e):
                if e.stage == "hash" and e.done >= 1 and worker.poll() is None:
                    worker.kill()
                    worker.wait()

            with pytest.raises(EnvironmentFault, match=rf"^the Dask scheduler at {address} has had no workers for 2 s, "
                                                       rf"with files still to hash; the hashes made so far are "
                                                       rf"cached: start `dask worker {address}` and rerun"):
                run(Options(input=tmp_path / "in", output=tmp_path / "o", algorithms=["phash_8"], exact=True,
                            cache=tmp_path / "c.sqlite", dask=address), progress=progress)
        finally:
            worker.kill()
            worker.wait(30)
    assert f"the Dask scheduler at {address} has no workers left; waiting up to 2 s" in caplog.text
    assert not (tmp_path / "o").exists()
    import sqlite3

    with sqlite3.connect(tmp_path / "c.sqlite") as db:  # the batches finished before the kill were kept
        assert 1 <= db.execute("SELECT count(*) FROM hashes").fetchone()[0] < 36


def test_a_dask_executor_passed_to_the_api_is_watched_too(corpus, tmp_path, monkeypatch):
    """``run(..., executor=client.get_executor())`` on a scheduler without workers waited forever."""
    distributed = pytest.importorskip("distributed")
    from mhc import EnvironmentFault, dask_exec

    monkeypatch.setattr(dask_exec, "DASK_WORKER_WAIT", 1.0)
    with distributed.LocalCluster(n_workers=0, dashboard_address=None) as cluster, \
            distributed.Client(cluster.scheduler_address) as client:
        with pytest.raises(EnvironmentFault, match=rf"^the Dask scheduler at {cluster.scheduler_address} has had "
                                                   rf"no workers for 1 s, with files still to hash"):
            run(Options(input=corpus, output=tmp_path / "o", algorithms=["phash_8"], no_cache=True),
                executor=client.get_executor())
    assert not (tmp_path / "o").exists()


def test_a_file_retried_alone_on_dask_does_not_take_the_missing_workers_for_its_fault(tmp_path, monkeypatch):
    """A file whose batch Dask gave up on (KilledWorker) is retried as a task of its own;
    with no worker left, that said "the decoder died (EnvironmentFault)" of the file, after
    the full wait, file after file, instead of ending the run."""
    distributed = pytest.importorskip("distributed")
    from mhc import EnvironmentFault, HashPlan, dask_exec, parse_algorithms
    from mhc.runner import _alone

    monkeypatch.setattr(dask_exec, "DASK_WORKER_WAIT", 1.0)
    item = (str(save(photo(1), tmp_path / "p.jpg")), "image")
    with distributed.LocalCluster(n_workers=0, dashboard_address=None) as cluster, \
            distributed.Client(cluster.scheduler_address) as client:
        with dask_exec.dask_executor(None, client.get_executor()) as ex:
            with pytest.raises(EnvironmentFault, match="has had no workers for 1 s"):
                _alone(item, HashPlan.build(parse_algorithms(["phash_8"])), ex)


def test_dask_workers_without_mhc_or_with_another_mhc_are_refused_before_hashing(corpus, tmp_path, caplog):
    """A worker without mhc died on every task (it cannot unpickle them), and one with
    another mhc would hash with other code under this mhc's cache keys. Real worker
    processes: one that cannot import mhc (no site-packages' .pth files), one whose mhc says
    another version (a --preload script); one whose Pillow says another version is only
    warned about."""
    distributed = pytest.importorskip("distributed")
    import site

    from mhc import EnvironmentFault

    dask = str(Path(sys.executable).parent / "dask")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": tmp_path}
    opts = dict(input=corpus, output=tmp_path / "o", algorithms=["phash_8"], no_cache=True)
    with distributed.LocalCluster(n_workers=0, dashboard_address=None) as cluster, \
            distributed.Client(cluster.scheduler_address) as client:
        address = cluster.scheduler_address
        env = dict(os.environ, PYTHONPATH=site.getsitepackages()[0])
        worker = subprocess.Popen([sys.executable, "-S", "-m", "distributed.cli.dask_worker", address, "--nthreads",
                                   "1", "--no-dashboard"], env=env, **quiet)
        try:
            client.wait_for_workers(1, timeout=60)
            first = set(client.nthreads())
            with pytest.raises(EnvironmentFault, match=rf"^the worker tcp://\S+ of the Dask scheduler at {address} "
                                                       rf"cannot import mhc; install it there \(version "):
                run(Options(**opts, dask=address))
        finally:
            worker.terminate()
            worker.wait(30)
        (tmp_path / "older.py").write_text("import mhc\nmhc.__version__ = '0.0.1'\n")
        worker = subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--no-dashboard", "--preload",
                                   str(tmp_path / "older.py")], **quiet)
        try:
            end = time.monotonic() + 60
            while not (len(client.nthreads()) == 1 and not set(client.nthreads()) & first):  # the new one alone
                assert time.monotonic() < end
                time.sleep(0.1)
            import mhc

            with pytest.raises(EnvironmentFault, match=rf"^the Dask worker tcp://\S+ runs another mhc: mhc 0\.0\.1 "
                                                       rf"\(here {mhc.__version__}\); its hashes would be cached as "
                                                       rf"this mhc's"):
                run(Options(**opts, dask=address))
            # a worker that joins after that check is met by each task's own: the batch is
            # refused, not hashed, and so is a file retried alone
            from mhc.algorithms import parse_algorithms
            from mhc.hashing import HashPlan
            from mhc.runner import _alone, run_batches

            items = [(str(f), "image") for f in sorted(corpus.rglob("*.jpg"))[:6]]
            plan = HashPlan.build(parse_algorithms(["phash_8"]))
            other = rf"^the Dask worker tcp://\S+ runs another mhc: mhc 0\.0\.1 \(expected {mhc.__version__}\)"
            with pytest.raises(EnvironmentFault, match=other):
                list(run_batches(items, plan, 1, client.get_executor()))
            with pytest.raises(EnvironmentFault, match=other):
                _alone(items[0], plan, client.get_executor())
        finally:
            worker.terminate()
            worker.wait(30)
        assert not (tmp_path / "o").exists()
        second = set(client.nthreads()) | first
        (tmp_path / "pillow.py").write_text(  # (Dask may import a preload twice: patched once)
            "import importlib.metadata as m\nversion = getattr(m, 'real_version', m.version)\nm.real_version = version\n"
            "m.version = lambda name: '9.0.0' if name == 'Pillow' else version(name)\n")
        worker = subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--no-dashboard", "--preload",
                                   str(tmp_path / "pillow.py")], **quiet)
        try:
            end = time.monotonic() + 60
            while not (len(client.nthreads()) == 1 and not set(client.nthreads()) & second):
                assert time.monotonic() < end
                time.sleep(0.1)
            with caplog.at_level(logging.WARNING):
                res = run(Options(**opts, dask=address))
        finally:
            worker.terminate()
            worker.wait(30)
    assert res.stats.decoded == len(res.files)  # another library's version is said, not refused
    import PIL

    assert re.search(rf"the Dask worker tcp://\S+ decodes with other libraries: Pillow 9\.0\.0 \(here "
                     rf"{re.escape(PIL.__version__)}\); its hashes may differ slightly", caplog.text)


def test_a_worker_without_mhc_that_joins_during_the_run_is_said(tmp_path):
    """The start check asks the workers there are; one without mhc that joins later cannot
    unpickle a task (each task's own check never runs there): its tasks wandered from worker
    to worker until Dask gave up (KilledWorker). The watch asks each worker that joins."""
    distributed = pytest.importorskip("distributed")
    import site

    from mhc import EnvironmentFault, dask_exec

    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": tmp_path}
    with distributed.LocalCluster(n_workers=0, dashboard_address=None) as cluster, \
            distributed.Client(cluster.scheduler_address) as client:
        address = cluster.scheduler_address
        good = subprocess.Popen([str(Path(sys.executable).parent / "dask"), "worker", address, "--nthreads", "1",
                                 "--no-dashboard"], **quiet)
        bad = None
        try:
            client.wait_for_workers(1, timeout=60)
            with dask_exec.dask_executor(None, client.get_executor()) as ex:
                ex.check_workers()  # the worker of the start check: nothing to say
                env = dict(os.environ, PYTHONPATH=site.getsitepackages()[0])  # (-S: no .pth, no mhc)
                bad = subprocess.Popen([sys.executable, "-S", "-m", "distributed.cli.dask_worker", address,
                                        "--nthreads", "1", "--no-dashboard"], env=env, **quiet)
                client.wait_for_workers(2, timeout=60)
                with pytest.raises(EnvironmentFault, match=rf"^the worker tcp://\S+, which joined the Dask scheduler "
                                                           rf"at {address} during the run, cannot import mhc; install "
                                                           rf"it there \(version "):
                    ex.check_workers()
        finally:
            for p in (good, bad):
                if p is not None:
                    p.terminate()
                    p.wait(30)


@pytest.mark.parametrize("address", ["local", "scheduler", "tcp://scheduler:port"])
def test_a_dask_address_that_is_not_one_is_refused_before_scanning(corpus, tmp_path, address):
    pytest.importorskip("distributed")
    r = run_cli("-i", str(corpus), "-o", str(tmp_path / "o"), "-a", "phash_8", "--dask", address)
    assert r.returncode == 2, r.stderr  # a typo, not "mhc failed unexpectedly" (70)
    assert len(r.stderr.splitlines()) == 1 and "is not a scheduler address" in r.stderr, r.stderr
    assert "Scanning" not in r.stderr and not (tmp_path / "o").exists()


def test_no_unclustered_links_and_changed_only(corpus, tmp_path):
    out = tmp_path / "o"
    res = run(Options(input=corpus, output=out, algorithms=["phash_8"], no_unclustered_links=True,
                      changed_only=True, workers=1, no_report=True))
    parts = res.algorithms[0].partitions
    written = sorted(p.name for p in (out / "phash_8").iterdir())
    changed = [p for p in parts if p.changed]
    assert 0 < len(changed) < len(parts)  # the test can tell the difference
    assert len(written) == len(changed)
    for p in changed:
        folder = next(x for x in written if x.startswith(f"thr_{p.threshold:03d}_"))
        unc = out / "phash_8" / folder / f"unclustered_{len(p.unclustered)}"
        assert unc.is_dir() and not any(unc.iterdir())
        links = [x for x in (out / "phash_8" / folder).rglob("*") if x.is_symlink()]
        assert len(links) == p.clustered_files
    # an unchanged threshold has exactly the clusters of the last written one below it
    for k, p in enumerate(parts):
        if not p.changed:
            prev = parts[k - 1]
            assert [c.tolist() for c in p.clusters] == [c.tolist() for c in prev.clusters]
    summary = json.loads((out / "summary.json").read_text())
    assert [t["written"] for t in summary["algorithms"]["phash_8"]["thresholds"]] == [p.changed for p in parts]
