"""Crop matching (--crops): window hashes find candidates, pixels confirm them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import cluster_of, photo, run_cli, save
from mhc import Options, hash_folder, run
from mhc import crops


@pytest.fixture(scope="module")
def cropped(tmp_path_factory) -> Path:
    """One picture, its crops of several shapes, and pictures that must not match it."""
    root = tmp_path_factory.mktemp("crops") / "in"
    src = photo(3, (960, 540))
    save(src, root / "source.jpg", quality=92)
    save(src.crop((0, 0, 720, 540)), root / "left_4x3.jpg", quality=90)  # 4:3 cut from 16:9: 75 %
    save(src.crop((400, 0, 704, 540)), root / "portrait.png")  # a 9:16 strip: 32 % of the width
    save(src.crop((30, 12, 921, 520)), root / "small_crop.jpg", quality=88)  # 3-7 % off each side
    save(photo(4, (960, 540)), root / "stranger.jpg", quality=92)
    # the same structure in other colours (a colour variant is not a copy)
    a = np.asarray(src).copy()
    save(Image.fromarray(a[:, :, ::-1].copy()), root / "recoloured.jpg", quality=92)
    # a small piece blown up 3x: not cut from this source (more pixels than it had there)
    save(src.crop((100, 100, 340, 235)).resize((720, 405), Image.BICUBIC), root / "enlarged.jpg", quality=92)
    save(Image.new("RGB", (640, 360), (90, 90, 90)), root / "flat.png")
    return root


def _matches(folder: Path) -> dict[tuple[str, str], float]:
    col = hash_folder(folder, ["phash_8"], crops=True, no_cache=True)
    names = [Path(f).name for f in col.files]
    return {(names[m.outer], names[m.inner]): m.area for m in col.crop_matches}


def test_crops_of_every_shape_are_confirmed(cropped):
    found = _matches(cropped)
    # each crop is confirmed inside a picture that holds it (the strip also lies in the small crop)
    holders = {"left_4x3.jpg": {"source.jpg"}, "portrait.png": {"source.jpg", "small_crop.jpg", "left_4x3.jpg"},
               "small_crop.jpg": {"source.jpg"}}
    for inner, outers in holders.items():
        assert any(i == inner and o in outers for o, i in found), (inner, found)
    share = {"left_4x3.jpg": (0.72, 0.78), "portrait.png": (0.28, 0.47), "small_crop.jpg": (0.8, 0.97)}
    for (outer, inner), area in found.items():
        if outer == "source.jpg":
            lo, hi = share[inner]
            assert lo <= area <= hi, (inner, area)


def test_strangers_colour_variants_enlargements_and_flat_pictures_are_not(cropped):
    found = _matches(cropped)
    linked = {name for pair in found for name in pair}
    for name in ("stranger.jpg", "recoloured.jpg", "enlarged.jpg", "flat.png"):
        assert name not in linked, (name, found)


def test_window_boxes_cover_the_shapes_a_crop_keeps():
    boxes = crops.window_boxes(1920, 1080)
    assert boxes[0] == (0.0, 0.0, 1.0, 1.0)
    assert len(boxes) <= crops.WINDOWS
    widths = {round(c - a, 3) for a, b, c, d in boxes if b == 0.0 and d == 1.0}
    assert round(0.75, 3) in widths and round(9 / 16 / (16 / 9), 3) in widths  # 4:3 and 9:16 windows
    assert all(0 <= a < c <= 1 and 0 <= b < d <= 1 for a, b, c, d in boxes)
    # a features blob round-trips
    blob = crops.features(photo(1, (300, 200)))
    f = crops.parse(blob)
    assert f.windows.shape == (crops.WINDOWS,) and max(f.grey.shape) == crops.THUMB_SIDE


def test_run_with_crops_links_them_at_every_threshold_and_the_report_says_so(cropped, tmp_path):
    out = tmp_path / "out"
    res = run(Options(input=cropped, output=out, algorithms=["phash_8"], crops=True, cache=tmp_path / "c.sqlite"))
    members = cluster_of(res, cropped / "source.jpg", 0)
    assert {Path(p).name for p in members} == {"source.jpg", "left_4x3.jpg", "portrait.png", "small_crop.jpg"}
    plain = run(Options(input=cropped, output=tmp_path / "plain", algorithms=["phash_8"], cache=tmp_path / "c.sqlite"))
    assert cluster_of(plain, cropped / "portrait.png", 0) == {str(cropped / "portrait.png")}
    summary = json.loads((out / "summary.json").read_text())
    crop_of = summary["file_info"]["crop_of"]
    files = summary["files"]
    portrait = files.index(str(cropped / "portrait.png"))
    assert Path(files[crop_of[portrait][0]]).name in {"source.jpg", "left_4x3.jpg", "small_crop.jpg"}
    assert summary["algorithms"]["phash_8"]["settings"]["crops"] is True
    page = (out / "report" / "phash_8" / "thr_000.html").read_text()
    assert "crop of source.jpg" in page or "crop of left_4x3.jpg" in page
    # the folder on disk holds the crop beside its source
    thr0 = next((out / "phash_8").glob("thr_000_*"))
    folder = next(d for d in thr0.iterdir() if not d.name.startswith("unclustered"))
    assert {Path(l.resolve()).name for l in folder.iterdir()} >= {"source.jpg", "portrait.png"}
    # a second run reads the crop features and the confirmed matches from the cache: nothing
    # is decoded or verified again
    def boom(*a, **k):
        raise AssertionError("verified again")

    import pytest as _pytest

    with _pytest.MonkeyPatch.context() as mp:
        mp.setattr(crops, "find_matches", boom)
        again = run(Options(input=cropped, output=out, algorithms=["phash_8"], crops=True,
                            cache=tmp_path / "c.sqlite"))
    assert again.collection.stats.decoded == 0
    assert cluster_of(again, cropped / "source.jpg", 0) == members
    # a stored result that cannot be read is computed again, not trusted
    for f in (tmp_path / "c.sqlite.forests").glob("*-crops.npz"):
        f.write_bytes(b"not an npz")
    third = run(Options(input=cropped, output=out, algorithms=["phash_8"], crops=True, cache=tmp_path / "c.sqlite"))
    assert cluster_of(third, cropped / "source.jpg", 0) == members
    # ... and so is a zip of other arrays under its name (a missing one ended the run: KeyError)
    n = len(third.collection.files)
    for other in ({"pairs": np.zeros((1, 2), int)}, {"pairs": np.array([[0, n]]), "geometry": np.zeros((1, 6))},
                  {"pairs": np.zeros((1, 3), int), "geometry": np.zeros((1, 6))}):
        for f in (tmp_path / "c.sqlite.forests").glob("*-crops.npz"):
            np.savez(f, **other)
        again = run(Options(input=cropped, output=out, algorithms=["phash_8"], crops=True, cache=tmp_path / "c.sqlite"))
        assert cluster_of(again, cropped / "source.jpg", 0) == members, other


def test_crop_links_survive_ssim_verification(cropped, tmp_path):
    pytest.importorskip("skimage")
    res = run(Options(input=cropped, output=tmp_path / "out", algorithms=["phash_8"], crops=True, verify="ssim",
                      cache=tmp_path / "c.sqlite"))
    assert str(cropped / "portrait.png") in cluster_of(res, cropped / "source.jpg", 0)


def test_require_honours_crops_and_a_rerun_keeps_them(cropped, tmp_path):
    """--require links only where every named hash agrees; a crop confirmed by its pixels is
    a link whatever the hashes say, so with --crops it joins its source in the combined
    folders too (threshold 25 %: the strictest), also when a later run carries the folder."""
    out, cache = tmp_path / "out", tmp_path / "c.sqlite"
    req = ["phash_8:6", "dhash_8:6"]
    res = run(Options(input=cropped, output=out, algorithms=["phash_8"], require=req, crops=True, cache=cache))
    key = "combined_phash_8-6_dhash_8-6"
    assert {Path(p).name for p in cluster_of(res, cropped / "source.jpg", 25, key)} >= {"portrait.png",
                                                                                       "left_4x3.jpg"}
    plain = run(Options(input=cropped, output=tmp_path / "plain", algorithms=["phash_8"], require=req, cache=cache))
    assert cluster_of(plain, cropped / "portrait.png", 25, key) == {str(cropped / "portrait.png")}
    assert json.loads((out / "summary.json").read_text())["algorithms"][key]["settings"]["crops"] is True
    # a rerun with another algorithm carries the combined folder, recomputed with its own settings
    again = run(Options(input=cropped, output=out, algorithms=["dhash_8"], cache=cache))
    carried = next(a for a in again.algorithms if a.key == key)
    assert carried.carried and str(cropped / "portrait.png") in cluster_of(again, cropped / "source.jpg", 25, key)
    # SSIM verification keeps them too: a crop's squeezed thumbnail is not like its source's,
    # but its pixels were checked already
    pytest.importorskip("skimage")
    checked = run(Options(input=cropped, output=tmp_path / "ssim", algorithms=["phash_8"], require=req, crops=True,
                          verify="ssim", cache=cache))
    assert str(cropped / "portrait.png") in cluster_of(checked, cropped / "source.jpg", 25, key)


def test_pairs_command_lists_crops(cropped, tmp_path):
    out = tmp_path / "out"
    cache = tmp_path / "c.sqlite"
    r = run_cli("-i", str(cropped), "-o", str(out), "-a", "phash_8", "--crops", "--cache", str(cache))
    assert r.returncode == 0, r.stderr
    said = next(line for line in r.stdout.splitlines() if line.startswith("--crops:"))
    assert int(said.split()[1]) >= 3  # the 4:3 cut, the strip and the small crop
    r = run_cli("pairs", "-o", str(out), "-a", "phash_8", "-t", "0", "--crops", "--format", "json", "--cache", str(cache))
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    shares = [x["crop"] for x in rows if "portrait.png" in (Path(x["path_a"]).name, Path(x["path_b"]).name)
              and x["crop"] is not None]
    assert shares and all(0.28 <= a <= 0.47 for a in shares), rows
    r = run_cli("pairs", "-o", str(out), "-a", "phash_8", "-t", "0", "--cache", str(cache))
    assert "portrait.png" not in r.stdout


def test_crops_with_hdbscan_is_one_line_and_exit_2(cropped, tmp_path):
    r = run_cli("-i", str(cropped), "-o", str(tmp_path / "out"), "--crops", "--method", "hdbscan", "-a", "phash_8")
    assert r.returncode == 2
    assert "--crops" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_faiss_and_numpy_candidates_agree(monkeypatch):
    pytest.importorskip("faiss")
    import mhc.pairs

    rng = np.random.default_rng(2)
    n = 300
    windows = rng.integers(0, 2**63, (n, crops.WINDOWS), dtype=np.uint64)
    whole = windows[:, 0].copy()
    for a in range(0, 60, 2):  # picture a+1 is a window of picture a, 2 bits off
        windows[a, 5] = whole[a + 1] ^ np.uint64(0b101)
    def collect():
        got = set()
        for o, i, k in crops.candidates(whole, windows, k=3, max_bits=8):
            got |= set(zip(o.tolist(), i.tolist(), k.tolist()))
        return got
    numpy_found = collect()
    monkeypatch.setattr(mhc.pairs, "FAISS_MIN_FILES", 10)
    faiss_found = collect()
    planted = {(a, a + 1, 5) for a in range(0, 60, 2)}
    assert planted <= numpy_found and planted <= faiss_found
    # random 64-bit codes are ~32 bits apart: nothing else is within 8 bits
    assert numpy_found == faiss_found == planted


def test_metric_puts_confirmed_pairs_at_zero_in_every_view():
    from mhc.metric import HashMetric
    from mhc.pairs import Edges, pack

    rng = np.random.default_rng(1)
    codes = pack([rng.integers(0, 256, 8, dtype=np.uint8).tobytes() for _ in range(50)])
    links = Edges(np.array([3, 7]), np.array([9, 20]), np.zeros(2, dtype=np.int32))
    m = HashMetric(codes, 64, links=links)
    members = np.array([20, 3, 9, 7, 11])
    fast = m.matrix(members)
    iu, ju = np.triu_indices(len(members), 1)
    slow = np.zeros_like(fast)
    slow[iu, ju] = m.between(members[iu], members[ju])
    assert (fast == slow + slow.T).all()
    assert fast[1, 2] == 0 and fast[0, 3] == 0 and fast[0, 4] > 0  # 3-9 and 20-7 linked, 20-11 not
    found = Edges.concat(list(m.edges(0))).least()
    assert set(zip(found.i.tolist(), found.j.tolist())) == {(3, 9), (7, 20)}
    assert m.fingerprint() != HashMetric(codes, 64).fingerprint()


def test_a_damaged_features_blob_only_leaves_that_picture_unmatched(cropped):
    col = hash_folder(cropped, ["phash_8"], crops=True, no_cache=True)
    feats = dict(col.crop_features)
    source = col.files.index(str(cropped / "source.jpg"))
    left = col.files.index(str(cropped / "left_4x3.jpg"))
    small = col.files.index(str(cropped / "small_crop.jpg"))
    feats[left] = feats[left][:40]  # truncated (a foreign or damaged cache value)
    widths = [i.width or 0 for i in col.info]
    heights = [i.height or 0 for i in col.info]
    pairs = {(m.outer, m.inner) for m in crops.find_matches(feats, widths, heights)}
    assert (source, small) in pairs
    assert not any(left in p for p in pairs)


def test_crops_on_videos_alone_is_a_plain_run(tmp_path):
    from conftest import make_video

    folder = tmp_path / "clips"
    folder.mkdir()
    make_video(folder / "a.mp4", [photo(7)])
    r = run_cli("-i", str(folder), "-o", str(tmp_path / "out"), "--crops", "-a", "phash_8", "-q",
                "--cache", str(tmp_path / "c.sqlite"))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
