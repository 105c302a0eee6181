"""End to end through the library API: layout, names, invariants of the sweep."""
from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image

from mhc import MhcError, Options, run
from mhc.algorithms import parse_algorithm
from mhc.summary import clusters as summary_clusters

from conftest import photo, save, tree_digest

THR = re.compile(r"^thr_(\d{3,})_unclustered_(\d+)$")
CLUSTER = re.compile(r"^(\d{3,})_(\d+)$")


def read_algo(folder: Path) -> dict[str, dict[str, dict[str, str]]]:
    """threshold folder -> cluster folder -> link name -> target."""
    out = {}
    for thr in sorted(folder.iterdir()):
        out[thr.name] = {
            c.name: {link.name: os.readlink(link) for link in c.iterdir()} for c in sorted(thr.iterdir())
        }
    return out


@pytest.fixture
def result_and_out(corpus, tmp_path):
    out = tmp_path / "out"
    res = run(Options(input=corpus, output=out, algorithms=["phash_8", "dhash_8", "whash_8"], workers=2))
    return res, out


def readable_files(corpus: Path) -> set[str]:
    return {str(p) for p in corpus.rglob("*") if p.suffix in (".jpg", ".png") and p.name != "broken.jpg"}


def test_layout_and_names(result_and_out, corpus):
    res, out = result_and_out
    assert (out / ".mhc-output").is_file()
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [".mhc", "dhash_8", "phash_8", "report", "whash_8"]
    summary = json.loads((out / "summary.json").read_text())
    for algo_key, entry in summary["algorithms"].items():
        algo = parse_algorithm(algo_key)
        tree = read_algo(out / algo_key)
        assert [THR.match(t)[1] for t in tree] == [f"{t:03d}" for t in range(20)]
        for thr_name, clusters in tree.items():
            unclustered = int(THR.match(thr_name)[2])
            names = list(clusters)
            assert names[-1] == f"unclustered_{unclustered}"
            assert len(clusters[names[-1]]) == unclustered
            sizes = []
            for rank, name in enumerate(names[:-1], 1):
                m = CLUSTER.match(name)
                assert m, name
                assert int(m[1]) == rank
                assert int(m[2]) == len(clusters[name]) >= 2
                sizes.append(int(m[2]))
            assert sizes == sorted(sizes, reverse=True)
            for cluster in clusters.values():
                for link, target in cluster.items():
                    assert os.path.isabs(target)
                    stem, ext = os.path.splitext(os.path.basename(target))
                    m = re.match(rf"^{re.escape(stem)}_([0-9a-f]{{{algo.bits // 4}}})(_\d+)?{re.escape(ext)}$", link)
                    assert m, (link, target)
                    i = summary["files"].index(target)
                    assert m[1] == entry["hashes"][i]


def test_every_readable_file_once_per_threshold_folder(result_and_out, corpus):
    res, out = result_and_out
    expected = readable_files(corpus)
    assert set(res.files) == expected
    for algo in ("phash_8", "dhash_8", "whash_8"):
        for thr_name, clusters in read_algo(out / algo).items():
            targets = [t for c in clusters.values() for t in c.values()]
            assert len(targets) == len(set(targets)), f"{algo}/{thr_name} has a file twice"
            assert set(targets) == expected, f"{algo}/{thr_name} misses or adds files"


def test_clusters_are_nested_across_thresholds(result_and_out):
    res, _ = result_and_out
    for a in res.algorithms:
        prev = None
        for p in a.partitions:
            label = {}
            for k, c in enumerate(p.clusters):
                for i in c:
                    label[int(i)] = k
            if prev is not None:
                for c in prev.clusters:  # each lower-threshold cluster sits inside one cluster here
                    assert len({label.get(int(i)) for i in c}) == 1 and label.get(int(c[0])) is not None
            prev = p


def test_near_duplicates_cluster_and_unrelated_stay_apart(result_and_out, corpus):
    res, _ = result_and_out
    a = next(x for x in res.algorithms if x.algorithm.key == "phash_8")
    p = next(p for p in a.partitions if p.threshold == 8)
    groups = [{res.files[i] for i in c} for c in p.clusters]
    for g in range(4):
        members = {f for f in res.files if f"group{g}/" in f or f"g{g} " in f or f"g{g}_" in f}
        assert len(members) == 4
        assert any(members <= c for c in groups), f"group {g} split at phash_8 threshold 8"
        # and nothing unrelated joined it
        c = next(c for c in groups if members <= c)
        assert c == members
    for u in range(3):
        f = str(corpus / "misc" / f"unrelated {u}.jpg")
        assert not any(f in c for c in groups)


def test_corrupt_file_reported_and_run_goes_on(result_and_out, corpus):
    res, out = result_and_out
    rows = list(csv.reader((out / "errors.csv").open()))
    assert rows[0] == ["path", "reason"]
    assert [r[0] for r in rows[1:]] == [str(corpus / "misc" / "broken.jpg")]
    assert "truncated" in rows[1][1] or "corrupt" in rows[1][1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["failed"] == 1
    assert summary["counts"]["found"] == len(readable_files(corpus)) + 1


def test_same_named_files_in_different_folders(result_and_out, corpus):
    res, out = result_and_out
    thr0 = next((out / "phash_8").glob("thr_000_*"))
    links = {os.readlink(p): p.name for p in thr0.rglob("*") if p.is_symlink()}
    a, b = links[str(corpus / "phone" / "IMG_0001.jpg")], links[str(corpus / "backup" / "IMG_0001.jpg")]
    assert a != b and a.startswith("IMG_0001_") and b.startswith("IMG_0001_")


def test_identical_names_and_hashes_get_unique_links(tmp_path):
    inp = tmp_path / "in"
    im = photo(7)
    for d in ("a", "b", "c"):
        save(im, inp / d / "same.png")
    out = tmp_path / "out"
    run(Options(input=inp, output=out, algorithms=["phash_8"], thresholds="0:0:1", workers=1))
    (cluster,) = [d for d in (out / "phash_8" / "thr_000_unclustered_0").iterdir() if d.name != "unclustered_0"]
    assert cluster.name == "001_3"
    names = sorted(p.name for p in cluster.iterdir())
    assert len(set(names)) == 3
    assert {os.readlink(cluster / n) for n in names} == {str(inp / d / "same.png") for d in "abc"}


def test_exif_orientation_is_applied(tmp_path):
    inp = tmp_path / "in"
    up = photo(11, (320, 200))
    save(up, inp / "upright.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # viewer rotates 90 degrees clockwise
    save(up.transpose(Image.Transpose.ROTATE_90), inp / "tagged.jpg", quality=95, exif=exif)
    # without honouring the tag the two are unrelated: the test can fail
    raw = imagehash.phash(Image.open(inp / "upright.jpg")) - imagehash.phash(Image.open(inp / "tagged.jpg"))
    assert raw > 12
    res = run(Options(input=inp, output=tmp_path / "out", algorithms=["phash_8"], thresholds="0:4:1", workers=1))
    p = res.algorithms[0].partitions[-1]
    assert len(p.clusters) == 1 and len(p.clusters[0]) == 2


def test_transparent_images_are_flattened(tmp_path):
    inp = tmp_path / "in"
    b = photo(12).convert("RGBA")
    b.paste((0, 0, 0, 0), (0, 0, 160, 240))  # fully transparent left half
    b2 = b.copy()
    hidden = photo(13).convert("RGBA").crop((0, 0, 160, 240))
    hidden.putalpha(0)
    b2.paste(hidden, (0, 0))  # another picture hidden behind zero alpha
    save(b, inp / "b.png")
    save(b2, inp / "b2.png")
    # imagehash alone sees the hidden colours: the test can fail
    assert imagehash.phash(Image.open(inp / "b.png")) - imagehash.phash(Image.open(inp / "b2.png")) > 6
    res = run(Options(input=inp, output=tmp_path / "out", algorithms=["phash_8"], thresholds="0:0:1", workers=1))
    assert [len(c) for c in res.algorithms[0].partitions[0].clusters] == [2]


def test_two_runs_give_identical_trees(corpus, tmp_path):
    opts = dict(input=corpus, algorithms=["phash_8", "ahash_8"], workers=2)
    run(Options(output=tmp_path / "o1", **opts))
    run(Options(output=tmp_path / "o2", no_cache=True, **opts))
    d1 = {k: v for k, v in tree_digest(tmp_path / "o1").items() if not k.endswith(".json")}
    d2 = {k: v for k, v in tree_digest(tmp_path / "o2").items() if not k.endswith(".json")}
    # regular files carry mtimes in the digest; compare content only for them
    strip = lambda d: {k: v.split(":")[0] if not v.startswith(("link:", "dir")) else v for k, v in d.items()}
    assert strip(d1) == strip(d2)
    s1 = json.loads((tmp_path / "o1" / "summary.json").read_text())
    s2 = json.loads((tmp_path / "o2" / "summary.json").read_text())
    assert s1["algorithms"] == s2["algorithms"] and s1["files"] == s2["files"]


def test_input_tree_is_byte_identical_after_a_run(corpus, tmp_path):
    before = tree_digest(corpus)
    run(Options(input=corpus, output=tmp_path / "out", algorithms=["phash_8"], workers=2))
    run(Options(input=corpus, output=tmp_path / "out", algorithms=["dhash_8"], workers=2))
    assert tree_digest(corpus) == before


def test_output_inside_input_is_refused_and_old_outputs_there_are_not_scanned(corpus, tmp_path):
    before = tree_digest(corpus)
    with pytest.raises(MhcError, match="inside the input folder"):
        run(Options(input=corpus, output=corpus / "zz_output", algorithms=["phash_8"], workers=1))
    assert tree_digest(corpus) == before  # nothing written there
    # an mhc output someone moved into their photos is recognised by its marker, not scanned
    r1 = run(Options(input=corpus, output=tmp_path / "out", algorithms=["phash_8"], thresholds="0:2:1", workers=1))
    os.rename(tmp_path / "out", corpus / "zz_output")
    r2 = run(Options(input=corpus, output=tmp_path / "out2", algorithms=["phash_8"], thresholds="0:2:1", workers=1))
    assert r1.files == r2.files and not any("zz_output" in f for f in r2.files)


def test_rerun_replaces_run_algorithms_and_keeps_others(corpus, tmp_path):
    out = tmp_path / "out"
    run(Options(input=corpus, output=out, algorithms=["phash_8", "dhash_8"], workers=1))
    dhash_before = tree_digest(out / "dhash_8")
    run(Options(input=corpus, output=out, algorithms=["phash_8"], thresholds="0:4:2", workers=1))
    assert sorted(p.name.split("_unclustered")[0] for p in (out / "phash_8").iterdir()) == [
        "thr_000", "thr_002", "thr_004"]  # no stale threshold folders
    assert tree_digest(out / "dhash_8") == dhash_before
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["algorithms"]) == {"phash_8", "dhash_8"}
    assert summary["carried_over"] == ["dhash_8"] and summary["computed_now"] == ["phash_8"]
    d = summary["algorithms"]["dhash_8"]["thresholds"][5]
    listed = {f for c in summary_clusters(summary, "dhash_8", d["threshold"]) for f in c}
    on_disk = {os.readlink(p) for p in (out / "dhash_8" / d["folder"]).rglob("*")
               if p.is_symlink() and not p.parent.name.startswith("unclustered")}
    assert listed == on_disk


def test_dry_run_writes_nothing(corpus, tmp_path):
    out = tmp_path / "out"
    before = set(tmp_path.iterdir())
    res = run(Options(input=corpus, output=out, algorithms=["phash_8"], dry_run=True, no_cache=True, workers=1))
    assert res.algorithms[0].partitions[0].threshold == 0
    assert set(tmp_path.iterdir()) == before  # no output, no cache, no lock file


def test_refuses_a_foreign_output_folder(corpus, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(MhcError, match="not empty and was not made by mhc"):
        run(Options(input=corpus, output=out, workers=1))
    assert (out / "precious.txt").read_text() == "keep me"
    with pytest.raises(MhcError, match="is the input folder"):
        run(Options(input=corpus, output=corpus, workers=1))
    with pytest.raises(MhcError, match="contains the input"):
        run(Options(input=corpus, output=corpus.parent, workers=1))


def test_relative_links(corpus, tmp_path):
    out = tmp_path / "out"
    run(Options(input=corpus, output=out, algorithms=["phash_8"], thresholds="3", relative_links=True, workers=1))
    links = [p for p in out.rglob("*") if p.is_symlink()]
    assert links and all(not os.path.isabs(os.readlink(p)) for p in links)
    assert all(p.resolve().is_file() for p in links)


def test_a_rerun_on_the_same_hashes_reuses_the_spanning_forest(tmp_path, monkeypatch):
    """Each algorithm's forest is kept beside the hash cache by the fingerprint of its
    hashes: a warm rerun reads it instead of searching pairs; a changed collection gets a
    new one; a damaged file is recomputed, never trusted; the output holds none of it;
    only the most recently used are kept."""
    from mhc.clustering import ForestCache
    from mhc.summary import read_summary

    inp = tmp_path / "in"
    for i in range(5):
        a = photo(i)
        save(a, inp / f"{i}.png")
        save(a.resize((120, 90)), inp / f"{i} small.png")
    o = dict(input=inp, output=tmp_path / "out", cache=tmp_path / "c.sqlite", algorithms=["phash_8", "dhash_8"],
             workers=1)
    first = run(Options(**o))
    parts = lambda res: [[c.tolist() for c in p.clusters] for p in res.algorithms[0].partitions]  # noqa: E731
    forests = tmp_path / "c.sqlite.forests"
    files = sorted(forests.glob("*.npz"))
    assert len(files) == 2 and not list((tmp_path / "out").rglob("*.npz"))
    sizes = {f.name: f.stat().st_size for f in files}
    second = run(Options(**o))
    assert {f.name: f.stat().st_size for f in forests.glob("*.npz")} == sizes  # read, not recomputed
    assert parts(second) == parts(first) and any(len(p) for p in parts(first))
    files[0].write_bytes(b"not a forest")  # damaged: recomputed
    third = run(Options(**o))
    assert parts(third) == parts(first) and files[0].stat().st_size == sizes[files[0].name]
    # cut short (a power cut, a full disk under another tool) or with a damaged block: a zip
    # that says so (BadZipFile), which ended the run "mhc failed unexpectedly"
    whole = files[0].read_bytes()
    for damaged in (whole[:len(whole) // 2], whole[:100] + bytes(len(whole) - 200) + whole[-100:]):
        files[0].write_bytes(damaged)
        assert parts(run(Options(**o))) == parts(first) and files[0].stat().st_size == len(whole)
    # a whole zip of other arrays under its name (another program's, or a hand's): a missing
    # column ended the run (KeyError, exit 70), a join past the files with an IndexError, and
    # joins of other files made clusters of them
    n = len(read_summary(tmp_path / "out")["files"])
    for other in ({"i": np.array([0]), "j": np.array([1])}, {"i": np.array([0]), "j": np.array([n]), "d": np.array([0])},
                  {"i": np.array([0.5]), "j": np.array([1.0]), "d": np.array([0.0])},
                  {"i": np.arange(n), "j": np.arange(n)[::-1], "d": np.zeros(n, int)},
                  {"i": np.array([0, 2]), "j": np.array([1, 3]), "d": np.array([0, 99])}):
        np.savez(files[0], **other)
        assert parts(run(Options(**o))) == parts(first), other
        with np.load(files[0]) as z:
            assert sorted(z.files) == ["d", "i", "j"] and len(z["i"]) < n and z["d"].max() <= 19  # computed again
    monkeypatch.setattr(ForestCache, "MAX_FILES", 3)
    save(photo(9), inp / "new.png")
    run(Options(**o))
    assert len(list(forests.glob("*.npz"))) == 3  # two new, and the most recently used old one
    assert len(read_summary(tmp_path / "out")["files"]) == 11
    (forests / "keep-me.npz").write_bytes(b"a user's file")  # not named as mhc names forests: kept
    save(photo(10), inp / "new2.png")
    run(Options(**o))
    assert (forests / "keep-me.npz").exists() and len(list(forests.glob("*-r*.npz"))) == 3


def test_forked_workers_inherit_what_hashing_imports(corpus):
    """Before a forked pool starts, the main process imports what hashing loads (SciPy,
    PyWavelets, imagehash, PDQ): each worker's first file then imports nothing heavy. Without
    it every worker imported them again (about 0.13 s each: -j 8 on 2 cores, 2.0 s -> 1.4 s)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from mhc import parse_algorithms\n"
        "from mhc.hashing import HashPlan\n"
        "from mhc.runner import hash_batch, warm\n"
        "plan = HashPlan.build(parse_algorithms(['phash_8', 'ahash_8', 'dhash_8', 'whash_8', 'phash_16', 'pdq_16',"
        " 'colorhash_8']))\n"
        "warm(plan, videos=True)\n"
        "before = set(sys.modules)\n"
        f"r = hash_batch([({str(corpus / 'phone' / 'IMG_0001.jpg')!r}, 'image')], plan)\n"
        "assert r[0].error is None, r[0].error\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n"
        "print('av' in before)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    imported, av_loaded = r.stdout.splitlines()
    # left to the first file: the decoder plugin of its format, and a standard module
    assert all(m.startswith("PIL.Jpeg") or m == "resource" for m in imported.split()), imported
    assert av_loaded == "True"
