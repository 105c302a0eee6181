"""Precision options on generated images: isometric matching, SSIM verification, linkage,
combined evidence, HDBSCAN, and `mhc evaluate`."""
from __future__ import annotations

import csv
import json
import re
import os

import networkx as nx
import numpy as np
import pytest
from PIL import Image

from mhc import Options, run
from mhc import hash_folder
from mhc.summary import clusters

from conftest import cluster_of, photo, run_cli, save


def test_mirrored_and_rotated_copies_match_only_with_isometric(tmp_path):
    inp = tmp_path / "in"
    base = photo(21, (320, 240))
    a = save(base, inp / "a.png")
    m = save(base.transpose(Image.Transpose.FLIP_LEFT_RIGHT), inp / "mirrored.png")
    r = save(base.transpose(Image.Transpose.ROTATE_90), inp / "rotated.png")
    f = save(base.transpose(Image.Transpose.ROTATE_180), inp / "upside down.png")
    save(photo(22), inp / "other.png")
    opts = dict(input=inp, algorithms=["phash_8"], thresholds="0:10:1", workers=1, no_report=True)
    plain = run(Options(output=tmp_path / "p", **opts))
    assert cluster_of(plain, a, 10) == {str(a)}
    iso = run(Options(output=tmp_path / "i", isometric=True, **opts))
    assert cluster_of(iso, a, 2) == {str(a), str(m), str(r), str(f)}
    assert str(tmp_path / "in" / "other.png") not in cluster_of(iso, a, 10)
    # mhc pairs sees the same pairs, each once
    r = run_cli("pairs", "-a", "phash_8", "-t", "2", "--isometric", "-i", str(inp), "-o", str(tmp_path / "i"))
    rows = [line.split(",")[:2] for line in r.stdout.strip().splitlines()[1:]]
    assert r.returncode == 0 and len(rows) == 6 and len({tuple(x) for x in rows}) == 6


def _collider(target: Image.Image) -> Image.Image:
    """A different picture with the same ahash_8 as ``target``: the 8x8 above/below-mean
    pattern of target drawn as hard blocks, under strong high-frequency noise."""
    g = np.asarray(target.convert("L").resize((8, 8), Image.LANCZOS), dtype=np.float32)
    blocks = np.where(g > g.mean(), 200, 50).astype(np.uint8)
    big = np.kron(blocks, np.ones((40, 40), dtype=np.uint8)).astype(np.int16)
    rng = np.random.default_rng(5)
    noise = rng.integers(-45, 46, big.shape)
    return Image.fromarray(np.clip(big + noise, 0, 255).astype(np.uint8), "L").convert("RGB")


def test_ssim_verification_drops_a_hash_collision(tmp_path):
    inp = tmp_path / "in"
    base = photo(31, (320, 320))
    a = save(base, inp / "photo.png")
    small = save(base.resize((160, 160)), inp / "photo small.png")
    fake = save(_collider(base), inp / "collision.png")
    opts = dict(input=inp, algorithms=["ahash_8"], thresholds="0:4:1", workers=1, no_report=True)
    plain = run(Options(output=tmp_path / "p", **opts))
    assert str(fake) in cluster_of(plain, a, 4)  # the hashes collide: the test can fail
    verified = run(Options(output=tmp_path / "v", verify="ssim", **opts))
    assert cluster_of(verified, a, 4) == {str(a), str(small)}
    strict = run(Options(output=tmp_path / "s", verify="ssim:0.9999", **opts))
    assert str(small) not in cluster_of(strict, a, 4)  # the threshold is honoured


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Pictures morphing step by step: at loose thresholds they chain into one cluster."""
    inp = tmp_path_factory.mktemp("chain") / "in"
    a, b = np.asarray(photo(41), dtype=np.float32), np.asarray(photo(42), dtype=np.float32)
    for k in range(12):
        w = k / 11
        save(Image.fromarray((a * (1 - w) + b * w).astype(np.uint8)), inp / f"step {k:02d}.png")
    for k in range(3):
        save(photo(60 + k), inp / f"alone {k}.png")
    return inp


def test_max_cluster_size_is_respected(chain, tmp_path):
    opts = dict(input=chain, algorithms=["phash_8"], workers=1, no_report=True)
    plain = run(Options(output=tmp_path / "p", **opts))
    assert max(p.largest for p in plain.algorithms[0].partitions) > 5  # the chain forms: the test can fail
    capped = run(Options(output=tmp_path / "c", max_cluster_size=5, **opts))
    parts = capped.algorithms[0].partitions
    assert all(p.largest <= 5 for p in parts)
    assert max(p.largest for p in parts) == 5
    for lo, hi in zip(parts, parts[1:]):  # still nested
        label = {int(i): k for k, c in enumerate(hi.clusters) for i in c}
        for c in lo.clusters:
            assert len({label.get(int(i)) for i in c}) == 1 and label.get(int(c[0])) is not None


def test_complete_linkage_keeps_every_pair_within_the_threshold(chain, tmp_path):
    opts = dict(input=chain, algorithms=["phash_8"], workers=1, no_report=True)
    res = run(Options(output=tmp_path / "c", linkage="complete", **opts))
    a = res.algorithms[0]
    codes = {i: int(h, 16) for i, h in enumerate(a.hexes)}
    grew = False
    for p in a.partitions:
        for c in p.clusters:
            for x in c:
                for y in c:
                    assert (codes[int(x)] ^ codes[int(y)]).bit_count() <= p.threshold
            grew |= len(c) > 2
    assert grew
    single = run(Options(output=tmp_path / "s", **opts)).algorithms[0].partitions
    assert sum(p.largest for p in single) > sum(p.largest for p in a.partitions)  # no chaining


def test_require_is_the_intersection(chain, tmp_path):
    corpus = chain
    res = run(Options(input=corpus, output=tmp_path / "o", algorithms=["phash_8"], workers=1, no_report=True,
                      require=["phash_8:10", "dhash_8:6"]))
    combined = next(a for a in res.algorithms if a.key == "combined_phash_8-10_dhash_8-6")
    assert (tmp_path / "o" / "combined_phash_8-10_dhash_8-6" / "thr_100_unclustered_"
            f"{len(combined.partitions[-1].unclustered)}").is_dir()
    hashed = hash_folder(corpus, ["phash_8", "dhash_8"], workers=1)
    pa = {(a, b) for a, b, _ in hashed.pairs("phash_8", 10)}
    pb = {(a, b) for a, b, _ in hashed.pairs("dhash_8", 6)}
    assert pa - pb and pa & pb  # they agree on some pairs, not all: the test can fail
    g = nx.Graph(pa & pb)
    expected = sorted(sorted(c) for c in nx.connected_components(g))
    got = sorted(sorted(res.files[i] for i in c) for c in combined.partitions[-1].clusters)
    assert got == expected


def test_hdbscan_writes_its_own_folder(corpus, tmp_path):
    out = tmp_path / "o"
    res = run(Options(input=corpus, output=out, algorithms=["phash_8"], method="hdbscan", min_cluster_size=2,
                      workers=1, no_report=True))
    folders = [p.name for p in (out / "phash_8").iterdir()]
    assert folders == ["hdbscan_min2"]
    targets = [os.readlink(p) for p in (out / "phash_8" / "hdbscan_min2").rglob("*") if p.is_symlink()]
    assert sorted(targets) == sorted(res.files)
    p = res.algorithms[0].partitions[0]
    assert len(p.clusters) >= 3  # the near-duplicate groups are found as dense clusters
    for g in range(4):
        members = {f for f in res.files if f"group{g}/" in f or f"g{g} " in f or f"g{g}_" in f}
        assert any(members <= {res.files[i] for i in c} for c in p.clusters)


def test_evaluate_reproduces_known_scores(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    for n in ("a1", "a2", "a3", "b1", "b2", "c"):
        (src / f"{n}.jpg").write_bytes(b"x")
    out = tmp_path / "out" / "phash_8"

    def folder(name: str, groups: dict[str, list[str]]) -> None:
        for g, members in groups.items():
            d = out / name / g
            d.mkdir(parents=True)
            for m in members:
                os.symlink(src / f"{m}.jpg", d / f"{m}_0.jpg")

    folder("thr_001_unclustered_1", {"001_3": ["a1", "a2", "b1"], "002_2": ["a3", "b2"], "unclustered_1": ["c"]})
    folder("thr_002_unclustered_1", {"001_3": ["a1", "a2", "a3"], "002_2": ["b1", "b2"], "unclustered_1": ["c"]})
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "group"])
        for n in ("a1", "a2", "a3"):
            w.writerow([f"photos/{n}.jpg", "A"])
        for n in ("b1", "b2"):
            w.writerow([f"photos/{n}.jpg", "B"])
        w.writerow(["photos/c.jpg", ""])
    from mhc.evaluate import evaluate

    rows = evaluate(tmp_path / "out", labels)
    assert [r.folder for r in rows] == ["phash_8/thr_001_unclustered_1", "phash_8/thr_002_unclustered_1"]
    # thr_001: 4 predicted pairs, 1 true among them (a1-a2); 4 true pairs in all
    assert (rows[0].precision, rows[0].recall, rows[0].f1) == (0.25, 0.25, 0.25)
    assert (rows[1].precision, rows[1].recall, rows[1].f1) == (1.0, 1.0, 1.0)
    # the same from JSON labels and a folder of groups, and through the CLI
    (tmp_path / "labels.json").write_text(json.dumps({f"photos/{n}.jpg": n[0].upper() for n in ("a1", "a2", "a3", "b1", "b2")}))
    assert [r.f1 for r in evaluate(tmp_path / "out", tmp_path / "labels.json")] == [0.25, 1.0]
    r = run_cli("evaluate", str(tmp_path / "out"), "--labels", str(labels))
    assert r.returncode == 0 and r.stdout.strip().endswith("best F1 = 1.0000 at phash_8/thr_002_unclustered_1")
    for n in ("a1", "a2", "a3", "b1", "b2"):  # a folder per group, of links to the files, given relative
        (tmp_path / "groups" / n[0].upper()).mkdir(parents=True, exist_ok=True)
        os.symlink(tmp_path / "photos" / f"{n}.jpg", tmp_path / "groups" / n[0].upper() / f"{n}.jpg")
    r = run_cli("evaluate", "out", "--labels", "groups", cwd=tmp_path)  # (relative: the folder's path came twice)
    assert r.returncode == 0 and r.stdout.strip().endswith("best F1 = 1.0000 at phash_8/thr_002_unclustered_1"), \
        r.stdout + r.stderr


def test_bad_precision_options_are_refused(corpus, tmp_path):
    for args, msg in ((["--verify", "psnr"], "the only verifier is ssim"), (["--verify", "ssim:3"], "from -1 to 1"),
                      (["--max-cluster-size", "1"], "--max-cluster-size"), (["--linkage", "average"], "--linkage"),
                      (["--require", "phash_8:10"], "two or more"), (["--require", "phash_8:x", "--require", "dhash_8:3"],
                                                                     "NAME_SIZE:BITS")):
        r = run_cli("-i", str(corpus), "-o", str(tmp_path / "o"), *args)
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)


def test_report_shows_isometric_distances(tmp_path):
    inp = tmp_path / "in"
    base = photo(23, (320, 240))
    save(base, inp / "a.png")
    save(base.transpose(Image.Transpose.FLIP_LEFT_RIGHT), inp / "b mirrored.png")
    out = tmp_path / "o"
    run(Options(input=inp, output=out, algorithms=["phash_8"], thresholds="0:2:1", isometric=True, workers=1))
    summary = json.loads((out / "summary.json").read_text())
    assert clusters(summary, "phash_8", 2) == [sorted(str(p) for p in inp.iterdir())]
    hexes = summary["algorithms"]["phash_8"]["hashes"]
    assert (int(hexes[0], 16) ^ int(hexes[1], 16)).bit_count() > 2  # plain hashes are far apart
    page = (out / "report" / "phash_8" / "thr_002.html").read_text()
    # the distance shown is the isometric one (at most 2), not the plain hashes' distance
    assert re.search(r"distance [012] to the probable original", page), page


def test_evaluate_scores_files_left_unlinked_as_unclustered_and_names_labelled_files_not_there(corpus, tmp_path):
    """With --no-unclustered-links an unclustered file is in no folder of its threshold: left
    out, its true pairs fell out of the recall (a threshold that clustered nothing scored
    recall 1). Labelled files the output does not hold (a typo, a file that could not be
    read) are named, not silently dropped."""
    from mhc.evaluate import evaluate

    labels = tmp_path / "labels.json"
    truth = {str(corpus / f): f"g{g}" for g in range(4) for f in (
        f"group{g}/original.jpg", f"group{g}/small.jpg", f"edits/g{g} recompressed.jpg", f"edits/g{g}_bright.png")}
    truth.update({str(corpus / "misc" / f"unrelated {u}.jpg"): None for u in range(3)})
    truth.update({str(corpus / "misc" / "broken.jpg"): None, str(corpus / "misc" / "typo.jpg"): "g0"})
    labels.write_text(json.dumps(truth))
    scores = {}
    for name, extra in (("linked", []), ("unlinked", ["--no-unclustered-links"])):
        assert run_cli("-q", "-i", str(corpus), "-o", str(tmp_path / name), "-a", "phash_8", *extra).returncode == 0
        scores[name] = evaluate(tmp_path / name, labels)
    assert scores["unlinked"] == scores["linked"]  # the same rows: folder, precision, recall, F1, pair counts
    assert min(r.recall for r in scores["unlinked"]) < 1 and all(r.true == 24 for r in scores["unlinked"])
    assert scores["unlinked"].unscored == [str(corpus / "misc" / "broken.jpg"), str(corpus / "misc" / "typo.jpg")]
    assert evaluate(tmp_path / "unlinked" / "phash_8", labels) == scores["unlinked"]  # an algorithm's folder alone
    r = run_cli("evaluate", str(tmp_path / "unlinked"), "--labels", str(labels))
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == (
        f"2 labelled file(s) are not in this output (not scored), e.g. {corpus / 'misc' / 'broken.jpg'}"), r.stdout


def test_evaluate_scores_a_threshold_folder_that_holds_no_link(tmp_path):
    """Nothing clustered at a threshold and --no-unclustered-links: its folder holds only an
    empty unclustered folder. It was missing from the table, and refused when given alone."""
    from mhc.evaluate import evaluate

    inp = tmp_path / "in"
    save(photo(1), inp / "a.jpg")
    save(photo(2), inp / "b.jpg")
    labels = tmp_path / "labels.csv"
    labels.write_text(f"path,group\n{inp / 'a.jpg'},A\n{inp / 'b.jpg'},A\n")
    out = tmp_path / "out"
    assert run_cli("-q", "-i", str(inp), "-o", str(out), "-a", "phash_8", "-t", "0,64",
                   "--no-unclustered-links").returncode == 0
    rows = evaluate(out, labels)
    assert [(r.folder, r.recall, r.true) for r in rows] == [("phash_8/thr_000_unclustered_2", 0.0, 1),
                                                            ("phash_8/thr_064_unclustered_0", 1.0, 1)]
    assert evaluate(out / "phash_8" / "thr_000_unclustered_2", labels) == rows[:1]
    from mhc import UsageError

    with pytest.raises(UsageError, match="unclustered_2 is a folder of links, not of clusters; pass the threshold "
                                         "folder it lies in"):  # (its empty unclustered folder, given)
        evaluate(out / "phash_8" / "thr_000_unclustered_2" / "unclustered_2", labels)


@pytest.mark.parametrize("mode", ["copy", "hardlink"])
def test_evaluate_maps_copies_back_to_their_originals(tmp_path, mode):
    inp = tmp_path / "in"
    for g in range(2):
        save(photo(g), inp / f"g{g}.jpg")
        save(photo(g).resize((160, 120)), inp / f"g{g} small.jpg")
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({f"in/g{g}{s}.jpg": f"G{g}" for g in range(2) for s in ("", " small")}))
    out = tmp_path / "o"
    run(Options(input=inp, output=out, algorithms=["phash_8"], thresholds="0:8:4", link=mode, workers=1))
    from mhc.evaluate import evaluate

    rows = evaluate(out, labels)
    assert rows[-1].f1 == 1.0 and rows[-1].true == 2 and rows[-1].predicted == 2
    # a score on nothing is not a score
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"elsewhere/x.jpg": "A", "elsewhere/y.jpg": "A"}))
    r = run_cli("evaluate", str(out), "--labels", str(other))
    assert r.returncode == 2 and "no file in" in r.stderr


def test_complete_linkage_respects_the_size_cap(chain, tmp_path):
    res = run(Options(input=chain, output=tmp_path / "c", algorithms=["phash_8"], linkage="complete",
                      max_cluster_size=3, workers=1, no_report=True))
    parts = res.algorithms[0].partitions
    assert max(p.largest for p in parts) == 3  # reached, never passed
    free = run(Options(input=chain, output=tmp_path / "f", algorithms=["phash_8"], linkage="complete", workers=1,
                       no_report=True))
    assert max(p.largest for p in free.algorithms[0].partitions) > 3  # the cap did something


def test_not_a_duplicate_holds_for_hdbscan_and_combined_evidence(corpus, tmp_path):
    from mhc import HashCache

    cache = tmp_path / "c.sqlite"
    small, bright = str(corpus / "group1" / "small.jpg"), str(corpus / "edits" / "g1_bright.png")
    o = dict(input=corpus, cache=cache, algorithms=["phash_8"], workers=1, no_report=True)
    hd = dict(method="hdbscan")
    req = dict(require=["phash_8:10", "dhash_8:10"], thresholds="0:10:1")

    def together(res) -> bool:
        return any(small in g and bright in g for a in res.algorithms for p in a.partitions
                   for g in ({res.files[i] for i in c} for c in p.clusters))

    assert together(run(Options(output=tmp_path / "h0", **o, **hd)))  # the test can fail
    assert together(run(Options(output=tmp_path / "r0", **o, **req)))
    with HashCache(cache) as c:
        c.ignore(small, bright)
    assert not together(run(Options(output=tmp_path / "h1", **o, **hd)))
    assert not together(run(Options(output=tmp_path / "r1", **o, **req)))
