"""Where users' media live: HEIC/AVIF/RAW, Hydrus Network, config files, "not a duplicate"."""
from __future__ import annotations

import importlib.util
import os
import shutil

import pytest
from PIL import Image
from pathlib import Path

from mhc import Options, run
from mhc.cache import HashCache

from conftest import photo, run_cli, save


def test_heic_and_avif_cluster_with_their_jpeg_twin(tmp_path):
    pytest.importorskip("pillow_heif")
    inp = tmp_path / "in"
    base = photo(51)
    a = save(base, inp / "IMG_0001.jpg", quality=92)
    h = save(base, inp / "IMG_0001.HEIC")
    v = save(base.resize((240, 180)), inp / "web.avif")
    save(photo(52), inp / "other.jpg")
    res = run(Options(input=inp, output=tmp_path / "o", algorithms=["phash_8"], thresholds="0:6:1", workers=1,
                      no_report=True))
    assert Image.open(h).format == "HEIF"  # really HEIC on disk
    p = res.algorithms[0].partitions[-1]
    assert [sorted(res.files[i] for i in c) for c in p.clusters] == [sorted([str(a), str(h), str(v)])]


def test_camera_jpegs_that_carry_a_preview_decode_like_plain_jpegs(tmp_path):
    """Cameras and phones write JPEGs with more pictures after the first (a large preview, an
    HDR gain map): Pillow opens them as MPO. They are drafted like any JPEG (before, decoded
    at full size: slower, and hashed a few bits away from the same picture as a plain JPEG)."""
    from mhc.decode import DecodeSettings, decode

    inp = tmp_path / "in"
    base = photo(61, (1600, 1200))
    plain = save(base, inp / "plain.jpg", quality=92)
    camera = save(base, inp / "DSC_0001.JPG", format="MPO", save_all=True,
                  append_images=[base.resize((400, 300))], quality=92)
    eyes = save(base, inp / "3d" / "DSCF0001.MPO", format="MPO", save_all=True,
                append_images=[photo(62, (1600, 1200))], quality=92)
    save(photo(63, (1600, 1200)), inp / "other.jpg", quality=92)
    assert Image.open(camera).format == "MPO" and Image.open(eyes).format == "MPO"  # the premise
    small = DecodeSettings(min_side=64)
    assert decode(str(camera), small).image.size == decode(str(plain), small).image.size == (100, 75)
    res = run(Options(input=inp, output=tmp_path / "o", algorithms=["phash_8", "dhash_16"], thresholds="0:4:1",
                      workers=1, no_report=True))
    assert res.errors == []
    for algo in res.algorithms:  # the same first picture: the same hashes, one cluster at 0
        assert [sorted(res.files[i] for i in c) for c in algo.partitions[0].clusters] == \
            [sorted([str(plain), str(camera), str(eyes)])]


def test_jpeg_2000_and_older_formats_cluster_with_their_jpeg_twin(tmp_path):
    from mhc.decode import DecodeSettings, decode

    inp = tmp_path / "in"
    base = photo(64, (256, 256))  # (an .ico holds at most 256x256)
    twin = save(base, inp / "photo.jpg", quality=92)
    made = [save(base, inp / f"photo{ext}") for ext in (".tga", ".pcx", ".ppm", ".qoi", ".ico", ".jp2", ".j2k")]
    made.append(save(base.convert("L"), inp / "grey.pgm"))
    big = photo(65, (2400, 1800))
    big_twin = save(big, inp / "scan.jpg", quality=92)
    levels = save(big, inp / "scan.jp2", quality_mode="rates", quality_layers=[20])  # 6 levels: 1/16 decoded
    few = save(big, inp / "scan-few-levels.jpx", num_resolutions=2)  # 1 level: decoded at full size
    save(photo(66, (256, 256)), inp / "other.png")
    small = DecodeSettings(min_side=64)  # a JPEG 2000 decoded at 1/16 (at full size: 85x64 after reduction)
    assert decode(str(levels), small).image.size == (150, 113)
    assert decode(str(few), small).image.size == (86, 65)  # could not be reduced: full size, then reduced
    (inp / "broken.jp2").write_bytes(b"\x00\x00\x00\x0cjP  \r\n\x87\n" + bytes(200))
    res = run(Options(input=inp, output=tmp_path / "o", algorithms=["phash_8"], thresholds="0:6:1", workers=1,
                      no_report=True))
    assert [(e.path, e.reason) for e in res.errors] == [
        (str(inp / "broken.jp2"), "corrupt JPEG 2000 data: the header is an image's but the rest cannot be decoded")]
    clusters = sorted(sorted(res.files[i] for i in c) for c in res.algorithms[0].partitions[-1].clusters)
    assert clusters == sorted([sorted(map(str, [twin, *made])), sorted(map(str, [big_twin, levels, few]))])


def test_raw_without_the_extra_is_reported_with_the_install_hint(tmp_path):
    if importlib.util.find_spec("rawpy") is not None:
        pytest.skip("rawpy is installed here; the hint is for installs without mhc[raw]")
    inp = tmp_path / "in"
    save(photo(1), inp / "a.jpg")
    (inp / "DSC_0001.NEF").write_bytes(b"II*\x00" + os.urandom(2000))
    res = run(Options(input=inp, output=tmp_path / "o", algorithms=["phash_8"], workers=1, no_report=True))
    assert [(e.path, e.reason) for e in res.errors] == [(str(inp / "DSC_0001.NEF"),
                                                          "RAW files need rawpy: pip install 'mhc[raw]'")]


# -- config -------------------------------------------------------------------------------
def test_config_file_then_command_line(corpus, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "mhc.toml").write_text(f'input = "{corpus}"\noutput = "out"\nalgo = ["dhash_8"]\nthresholds = "0:3:1"\n'
                                   "workers = 1\nno-report = true\n")
    r = run_cli("-q", cwd=work)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (work / "out").iterdir() if p.is_dir()) == ["dhash_8"]
    assert len(list((work / "out" / "dhash_8").iterdir())) == 4 and not (work / "out" / "index.html").exists()
    r = run_cli("-q", "-a", "phash_8", "-t", "0:1:1", "-o", "out2", cwd=work)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (work / "out2").iterdir() if p.is_dir()) == ["phash_8"]
    assert len(list((work / "out2" / "phash_8").iterdir())) == 2
    shown = run_cli("config", cwd=work).stdout
    assert "dhash_8" in shown and "mhc.toml" in shown and "default" in shown
    # [tool.mhc] in a pyproject.toml, and a bad key refused clearly
    (work / "mhc.toml").unlink()
    (work / "pyproject.toml").write_text('[tool.mhc]\nalgo = "ahash_8"\nframes = 7\n')
    shown = run_cli("config", cwd=work).stdout
    assert "ahash_8" in shown and "[tool.mhc]" in shown and "7" in shown
    (work / "pyproject.toml").write_text('[tool.mhc]\ncolour = "red"\n')
    r = run_cli("config", cwd=work)
    assert r.returncode == 2 and "unknown setting 'colour'" in r.stderr


# -- not a duplicate ------------------------------------------------------------------------
def test_ignored_pair_stays_apart_and_the_rest_is_unchanged(corpus, tmp_path):
    cache = tmp_path / "c.sqlite"
    opts = dict(input=corpus, cache=cache, algorithms=["phash_8"], workers=1, no_report=True)
    before = run(Options(output=tmp_path / "a", **opts))
    small, bright = str(corpus / "group1" / "small.jpg"), str(corpus / "edits" / "g1_bright.png")
    r = run_cli("ignore", small, bright, "--cache", str(cache))
    assert r.returncode == 0 and "not a duplicate" in r.stdout
    assert small in run_cli("ignore", "--list", "--cache", str(cache)).stdout
    after = run(Options(output=tmp_path / "b", **opts))
    for pb, pa in zip(before.algorithms[0].partitions, after.algorithms[0].partitions):
        cb = [{before.files[i] for i in c} for c in pb.clusters]
        ca = [{after.files[i] for i in c} for c in pa.clusters]
        assert not any(small in c and bright in c for c in ca)
        group = next((c for c in cb if small in c), None)
        others_b = [c for c in cb if c is not group]
        others_a = [c for c in ca if small not in c and bright not in c]
        assert sorted(map(sorted, others_b)) == sorted(map(sorted, others_a))
        if group is not None:  # the two are split, nothing else leaves or joins
            parts = [c for c in ca if small in c or bright in c]
            union = set().union(*parts) | ({small} if not any(small in c for c in ca) else set()) | \
                ({bright} if not any(bright in c for c in ca) else set())
            assert union == group
    assert any(small in c and bright in c for p in before.algorithms[0].partitions
               for c in ({before.files[i] for i in cl} for cl in p.clusters))  # they were together: the test can fail
    run_cli("ignore", "--remove", small, bright, "--cache", str(cache))
    with HashCache(cache) as c:
        assert c.ignored() == []


def test_ignored_pair_stays_apart_under_complete_linkage(corpus, tmp_path):
    cache = tmp_path / "c.sqlite"
    opts = dict(input=corpus, cache=cache, algorithms=["phash_8"], workers=1, no_report=True, linkage="complete")
    small, bright = str(corpus / "group1" / "small.jpg"), str(corpus / "edits" / "g1_bright.png")
    before = run(Options(output=tmp_path / "a", **opts))
    together = lambda res: any(small in {res.files[i] for i in c} and bright in {res.files[i] for i in c}
                               for p in res.algorithms[0].partitions for c in p.clusters)
    assert together(before)  # the test can fail
    with HashCache(cache) as c:
        c.ignore(small, bright)
    assert not together(run(Options(output=tmp_path / "b", **opts)))


@pytest.mark.parametrize("link", ["copy", "hardlink"])
def test_files_picked_in_an_output_mark_their_originals_in_its_cache(tmp_path, link):
    """A viewer browsing the output shows its cluster folders, and their paths are the ones a
    user copies. In a tree of copies or hard links those are files of their own: the mark
    went, under their names, into the default cache, and no run ever applied it."""
    a = save(photo(1), tmp_path / "in" / "a.jpg")
    b = save(photo(1).resize((160, 120)), tmp_path / "in" / "sub" / "b.png")
    out, cache = tmp_path / "out", tmp_path / "c.sqlite"
    args = ("-i", str(tmp_path / "in"), "-o", str(out), "--cache", str(cache), "--link", link, "-a", "phash_8", "-t",
            "4", "-q", "--no-report")
    assert run_cli(*args).returncode == 0
    (cluster,) = (out / "phash_8" / "thr_004_unclustered_0").glob("001_2")
    picked = sorted(cluster.iterdir())
    r = run_cli("ignore", *map(str, picked), env={"XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert r.returncode == 0 and f"(in {cache})" in r.stdout, r.stderr
    with HashCache(cache) as c:
        assert c.ignored() == [(str(a), str(b))]
    assert not (tmp_path / "xdg").exists()  # nothing went to the default cache
    assert run_cli(*args).returncode == 0
    assert [p.name for p in (out / "phash_8").iterdir()] == ["thr_004_unclustered_2"]
    stray = out / "phash_8" / "thr_004_unclustered_2" / "unclustered_2" / "a-copy.jpg"
    shutil.copy(a, stray)  # a file put there by hand stands for nothing: said, nothing marked
    r = run_cli("ignore", str(stray), str(b))
    assert r.returncode == 2 and f"{stray} is in the mhc output {out} but is not one of its links" in r.stderr
    stray.unlink()


@pytest.mark.parametrize("args", [["--list", "--remove"], ["--list", "a.jpg", "b.jpg"]])
def test_ignore_list_with_other_arguments_is_refused(tmp_path, args):
    """`mhc ignore --list --remove A B` listed the pairs and removed nothing, exit 0."""
    r = run_cli("ignore", "--cache", str(tmp_path / "c.sqlite"), *args)
    assert r.returncode == 2 and "--list shows the marked pairs and takes no files and no --remove" in r.stderr
    assert not (tmp_path / "c.sqlite").exists()


@pytest.mark.parametrize("how", ["symlink", "hard link", "same path"])
def test_ignoring_a_file_and_itself_is_refused(tmp_path, how):
    """Two hard links of one file were marked "not a duplicate" (only symlinks were seen
    through); a mark between a file and itself says nothing, and nothing is written."""
    a = save(photo(1, (64, 48)), tmp_path / "a.jpg")
    b = tmp_path / "b.jpg"
    if how == "symlink":
        os.symlink(a, b)
    elif how == "hard link":
        os.link(a, b)
    else:
        b = a
    r = run_cli("ignore", "--cache", str(tmp_path / "c.sqlite"), str(a), str(b))
    assert r.returncode == 2 and "those are the same file" in r.stderr, r.stderr
    assert not (tmp_path / "c.sqlite").exists()


def test_ignoring_a_file_no_run_hashes_is_refused(tmp_path):
    """`mhc ignore a.jpg notes.txt` (a slip of tab completion) was "marked": a mark no run
    ever reads. Refused by the extension, as a run would skip the file; nothing written."""
    a = save(photo(1, (64, 48)), tmp_path / "a.jpg")
    (tmp_path / "a.jpg.txt").write_text("notes")
    r = run_cli("ignore", "--cache", str(tmp_path / "c.sqlite"), str(a), str(tmp_path / "a.jpg.txt"))
    assert r.returncode == 2 and r.stderr.startswith(f"Error: {tmp_path / 'a.jpg.txt'} is not an image or video by "
                                                     f"its extension"), r.stderr
    assert not (tmp_path / "c.sqlite").exists()
    b = save(photo(2, (64, 48)), tmp_path / "b.PNG")  # any case, as a run reads it
    assert run_cli("ignore", "--cache", str(tmp_path / "c.sqlite"), str(a), str(b)).returncode == 0


def test_not_a_duplicate_marks_follow_a_renamed_folder(tmp_path):
    """Marks are kept by path: after the user renamed the folder, the next run linked the
    two pictures they had marked "not a duplicate". The files' cached rows follow them
    (same size, mtime and sampled content), and now so do their marks."""
    from PIL import ImageEnhance

    a = photo(7, (320, 240))
    save(a, tmp_path / "in" / "trip" / "a.jpg")
    save(ImageEnhance.Brightness(a).enhance(1.15), tmp_path / "in" / "trip" / "a bright.jpg")
    save(photo(8, (320, 240)), tmp_path / "in" / "other.jpg")
    cache = tmp_path / "c.sqlite"
    opts = dict(cache=cache, algorithms=["phash_8"], thresholds="0:10:2", workers=1, no_report=True)

    def together(res, names) -> bool:
        top = res.algorithms[0].partitions[-1]
        return any(names <= {Path(res.files[i]).name for i in c} for c in top.clusters)

    assert together(run(Options(input=tmp_path / "in", output=tmp_path / "o1", **opts)), {"a.jpg", "a bright.jpg"})
    with HashCache(cache) as c:
        c.ignore(str(tmp_path / "in" / "trip" / "a.jpg"), str(tmp_path / "in" / "trip" / "a bright.jpg"))
    (tmp_path / "in" / "trip").rename(tmp_path / "in" / "trip 2024")
    res = run(Options(input=tmp_path / "in", output=tmp_path / "o2", **opts))
    assert res.stats.decoded == 0  # served from the cache by their twins
    assert not together(res, {"a.jpg", "a bright.jpg"})
    with HashCache(cache) as c:
        assert (str(tmp_path / "in" / "trip 2024" / "a bright.jpg"), str(tmp_path / "in" / "trip 2024" / "a.jpg")) \
            in c.ignored()
        assert len(c.ignored()) == 2  # the old one stays (the folder may be renamed back)
