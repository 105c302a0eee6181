"""Bad and odd input: every case reported with a reason, the run goes on, nothing is lost."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mhc import Options, run
from mhc.errors import EnvironmentFault

from conftest import ROOT, photo, run_cli, save, tree_digest


def _tiny(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8), "L").resize((32, 32), Image.NEAREST)


@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory) -> tuple[Path, dict[str, str], set[str]]:
    """Every kind of bad or odd input. Returns (root, bad path -> expected reason, good paths)."""
    root = tmp_path_factory.mktemp("odd") / "in"
    bad: dict[str, str] = {}
    good: set[str] = set()

    def ok(p: Path) -> None:
        good.add(str(p))

    ok(save(photo(1), root / "plain.jpg"))
    (root / "empty.jpg").parent.mkdir(parents=True, exist_ok=True)
    (root / "empty.jpg").write_bytes(b"")
    bad[str(root / "empty.jpg")] = "empty file"
    data = (root / "plain.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 3])
    bad[str(root / "truncated.jpg")] = "truncated"
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    bad[str(root / "corrupt.png")] = "corrupt"
    (root / "letter.jpg").write_text("Dear Sir, this is not a picture.\n")
    bad[str(root / "letter.jpg")] = "holds text"
    # a PNG named .jpg is still a picture: confirmed by content, hashed
    ok(save(photo(2), root / "really a png.jpg", format="PNG"))
    # decompression bomb: 20000 x 20000 pixels in a few kB
    Image.new("1", (20000, 20000)).save(root / "bomb.png")
    bad[str(root / "bomb.png")] = "--max-pixels"
    ok(save(Image.new("RGB", (1, 1), (200, 10, 10)), root / "odd" / "one pixel.png"))
    ok(save(photo(3, (4000, 3)), root / "odd" / "thin.png"))
    ok(save(photo(4, (3, 2000)), root / "odd" / "tall.jpg"))
    ok(save(photo(5).convert("CMYK"), root / "odd" / "cmyk.jpg"))
    sixteen = (np.asarray(photo(6).convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    ok(save(Image.fromarray(sixteen), root / "odd" / "sixteen bit.png"))
    pal = photo(7).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    pal.info["transparency"] = 0
    ok(save(pal, root / "odd" / "palette.png", transparency=0))
    # transparency as bytes (a tRNS table): Pillow warns "should be converted to RGBA" when converting
    ok(save(pal, root / "odd" / "palette table.png", transparency=bytes(range(0, 256, 4))))
    frames = [photo(8 + k, (120, 90)) for k in range(3)]
    frames[0].save(root / "odd" / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    ok(root / "odd" / "animated.gif")
    frames[0].save(root / "odd" / "pages.tif", save_all=True, append_images=frames[1:])
    ok(root / "odd" / "pages.tif")
    ok(save(photo(9), root / "odd" / "UPPER CASE.JPEG"))
    ok(save(photo(10), root / "odd" / "image.webp"))
    ok(save(photo(11), root / "odd" / "image.bmp"))
    # links: dangling, loop, to a folder (not followed by default)
    os.symlink(root / "nowhere.jpg", root / "dangling.jpg")
    bad[str(root / "dangling.jpg")] = "dangling symlink"
    os.symlink(root / "loop_b.jpg", root / "loop_a.jpg")
    os.symlink(root / "loop_a.jpg", root / "loop_b.jpg")
    bad[str(root / "loop_a.jpg")] = "symlink loop"
    bad[str(root / "loop_b.jpg")] = "symlink loop"
    os.symlink(root / "odd", root / "linked folder")
    # names: not UTF-8, newline, HTML
    raw = os.path.join(os.fsencode(root), b"caf\xe9 latin1.jpg")
    save(photo(12), Path(os.fsdecode(raw)))
    ok(Path(os.fsdecode(raw)))
    ok(save(photo(13), root / "names" / "two\nlines.jpg"))
    ok(save(photo(14), root / "names" / "<img src=x onerror=alert(1)>.jpg"))
    # 1050 pairs of identical small pictures, all 2100 files named IMG.png: more than 999 clusters
    for k in range(1050):
        im = _tiny(10_000 + k)
        ok(save(im, root / "same" / f"{k:04d}" / "IMG.png"))
        ok(save(im, root / "same" / f"{k:04d}" / "copy" / "IMG.png"))
    return root, bad, good


def test_every_bad_file_reported_every_good_file_placed(odd_folder, tmp_path):
    root, bad, good = odd_folder
    before = tree_digest(root)
    out = tmp_path / "out"
    r = run_cli("-i", str(root), "-o", str(out), "-a", "phash_8", "-t", "0", "--max-pixels", "50000000", "-j", "2")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    # stderr holds the progress bars and nothing else: no library's warning (Pillow, libpng, FFmpeg)
    from mhc.cli import LABELS

    noise = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith(tuple(LABELS.values()))]
    assert not noise, noise
    with open(out / "errors.csv", newline="", encoding="utf-8", errors="surrogateescape") as f:
        rows = {row["path"]: row["reason"] for row in csv.DictReader(f)}
    assert set(rows) == set(bad), set(rows) ^ set(bad)
    for path, reason in bad.items():
        assert reason in rows[path], (path, rows[path])
    thr = out / "phash_8" / "thr_000_unclustered_" f"{len(good) - 2100}"
    assert thr.is_dir(), sorted(p.name for p in (out / "phash_8").iterdir())
    targets = [os.readlink(p) for p in thr.rglob("*") if p.is_symlink()]
    assert len(targets) == len(set(targets))
    assert set(targets) == good
    # more than 999 clusters: the rank grows to 4 digits and still sorts
    clusters = sorted(p.name for p in thr.iterdir() if not p.name.startswith("unclustered"))
    assert len(clusters) == 1050 and clusters[0] == "0001_2" and clusters[-1] == "1050_2"
    # names stay one path component and printable
    for p in thr.rglob("*"):
        assert "\n" not in p.name and "/" not in p.name
    assert tree_digest(root) == before


def test_folder_changing_while_scanned(tmp_path):
    inp = tmp_path / "in"
    for k in range(6):
        save(photo(k), inp / f"p{k}.jpg")
    victim = inp / "p3.jpg"

    def progress(e):
        if e.stage == "scan" and victim.exists():
            victim.unlink()  # vanishes between discovery and hashing
            save(photo(99), inp / "late arrival.jpg")

    res = run(Options(input=inp, output=tmp_path / "out", algorithms=["phash_8"], workers=1), progress=progress)
    assert [(e.path, e.reason) for e in res.errors] == [(str(victim), "file disappeared while scanning")]
    assert len(res.files) == 5


@pytest.mark.parametrize("link", ["copy", "hardlink"])
def test_an_original_gone_before_its_copy_is_named_as_such(tmp_path, link):
    """Deleted after hashing, before --link copy copied it: the line read "cannot write the
    output (ORIGINAL): No such file or directory; choose another --output"."""
    inp, out = tmp_path / "in", tmp_path / "out"
    for k in range(4):
        save(photo(k), inp / f"p{k}.jpg")
    run(Options(input=inp, output=out, algorithms=["phash_8"], workers=1, link=link, no_cache=True))
    before = tree_digest(out)
    victim = inp / "p2.jpg"

    def progress(e):
        if e.stage == "write" and victim.exists():
            victim.unlink()

    (inp / "p9.jpg").write_bytes((inp / "p1.jpg").read_bytes())  # so the tree changes and is written
    with pytest.raises(EnvironmentFault) as caught:
        run(Options(input=inp, output=out, algorithms=["phash_8"], workers=1, link=link, no_cache=True),
            progress=progress)
    assert str(caught.value) == (f"{victim} was deleted or moved during the run, before its "
                                 f"{'copy' if link == 'copy' else 'link'} was made; run again (the previous output "
                                 f"is unchanged)")
    after = {k: v for k, v in tree_digest(out).items() if not k.startswith(".mhc/thumbs/")}  # (a thumbnail cache)
    assert after == {k: v for k, v in before.items() if not k.startswith(".mhc/thumbs/")}


def test_unreadable_file_is_reported(tmp_path):
    inp = tmp_path / "in"
    save(photo(1), inp / "fine.jpg")
    secret = save(photo(2), inp / "secret.jpg")
    secret.chmod(0)
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "cluster.py"), "-i", str(inp), "-o", str(out), "-a", "phash_8", "-q"]
    if os.geteuid() == 0:
        # root reads everything; without its capabilities it meets a real EACCES
        if not shutil.which("setpriv"):
            pytest.skip("running as root and setpriv (util-linux) is missing")
        cmd = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    secret.chmod(0o644)
    assert r.returncode == 0, r.stderr
    rows = list(csv.reader((out / "errors.csv").open()))
    assert rows[1:] == [[str(secret), "permission denied"]]
    assert len([p for p in out.rglob("*") if p.is_symlink()]) == 20  # fine.jpg in each threshold folder


@pytest.mark.parametrize("files", [3, 30])  # decoded in the command's own process; in workers
def test_what_pillow_mends_in_a_file_is_not_written_over_the_terminal(tmp_path, files):
    """Corrupt EXIF (a tag past the end of the file, as some cameras and editors write it):
    Pillow decodes the picture and warns on stderr, with a path of its own source and no word
    of which file. Those lines came through; the files are hashed and nothing more is said."""
    inp = tmp_path / "in"
    bad_exif = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01\x0f\x00\x02\x00\x00\x00\x40\x00\x00\x00\xff"
    for k in range(files):
        save(photo(k), inp / f"IMG_{k:04d}.jpg", exif=bad_exif)
    r = run_cli("-i", str(inp), "-o", str(tmp_path / "out"), "-a", "phash_8", "--no-cache", "-j", "2")
    assert r.returncode == 0, r.stderr
    assert f"{files} files found: {files} decoded" in r.stdout  # each hashed
    assert "Warning" not in r.stderr and "PIL" not in r.stderr, r.stderr
    with pytest.warns(UserWarning), Image.open(inp / "IMG_0000.jpg"):  # (Pillow < 12: "Truncated File Read")
        pass  # (the premise: Pillow warns as it opens the file)


def test_hardlink_and_copy_modes(tmp_path):
    inp = tmp_path / "in"
    a = save(photo(1), inp / "a.jpg")
    save(photo(1).resize((160, 120)), inp / "b.jpg")
    for mode in ("hardlink", "copy"):
        out = tmp_path / mode
        run(Options(input=inp, output=out, algorithms=["phash_8"], thresholds="4", link=mode, workers=1),
            background_cleanup=False)
        (cluster,) = [d for d in (out / "phash_8" / "thr_004_unclustered_0").iterdir() if d.name == "001_2"]
        files = sorted(cluster.iterdir())
        assert all(f.is_file() and not f.is_symlink() for f in files)
        fa = next(f for f in files if f.name.startswith("a_"))
        assert fa.read_bytes() == a.read_bytes()
        assert (fa.stat().st_ino == a.stat().st_ino) == (mode == "hardlink")
        # a rerun replaces the tree made of files (they are mhc's) without complaint
        run(Options(input=inp, output=out, algorithms=["phash_8"], thresholds="3", link=mode, workers=1),
            background_cleanup=False)
        assert (out / "phash_8" / "thr_003_unclustered_0").is_dir()
        assert not (out / "phash_8" / "thr_004_unclustered_0").exists()
    # the original plus the one hard link of the current tree: the replaced tree's link is gone
    assert a.stat().st_nlink == 2


def _protected_hardlinks() -> bool:
    try:
        return os.geteuid() == 0 and Path("/proc/sys/fs/protected_hardlinks").read_text().strip() == "1"
    except OSError:
        return False


@pytest.mark.skipif(not _protected_hardlinks(), reason="needs root (to act as another user) and fs.protected_hardlinks")
def test_a_hard_link_to_another_users_file_names_the_kernels_rule(tmp_path):
    """Linux refuses a hard link to a file its user neither owns nor may write
    (fs.protected_hardlinks): the line says so, not only "the filesystem holds none".
    Root is exempt, so the link is made in a child that has become nobody."""
    from mhc.errors import MhcError
    from mhc.links import make_link

    save(photo(1), tmp_path / "in" / "a.jpg")  # root's, 0644
    (tmp_path / "out").mkdir()
    os.chown(tmp_path / "out", 65534, 65534)
    os.chmod(tmp_path, 0o755)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: relative paths from tmp_path, whose parents nobody may not enter
        try:
            os.chdir(tmp_path)
            os.setgid(65534)
            os.setuid(65534)
            make_link("in/a.jpg", "out/a.jpg", "hardlink", False)
            said = "made"
        except MhcError as e:
            said = str(e)
        except BaseException as e:  # noqa: BLE001  (anything else is the test's failure, said)
            said = f"{type(e).__name__}: {e}"
        os.write(write, said.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        said = f.read()
    os.waitpid(pid, 0)
    assert said == ("cannot hard-link in/a.jpg (Operation not permitted): Linux refuses a hard link to another "
                    "user's file (fs.protected_hardlinks), and some filesystems hold none; use --link copy"), said
    assert not (tmp_path / "out" / "a.jpg").exists()


def test_follow_symlinks_scans_each_real_folder_once(tmp_path):
    inp = tmp_path / "in"
    save(photo(1), inp / "real" / "a.jpg")
    save(photo(2), inp / "real" / "b.jpg")
    os.symlink("real", inp / "a link to real")  # sorts before "real": real paths must still win
    outside = tmp_path / "outside"
    save(photo(3), outside / "c.jpg")
    os.symlink(outside, inp / "z elsewhere")
    os.symlink("..", inp / "real" / "loop")  # a loop back to the top
    res = run(Options(input=inp, output=tmp_path / "o", algorithms=["phash_8"], follow_symlinks=True, workers=1,
                      no_report=True))
    assert res.files == [str(inp / "real" / "a.jpg"), str(inp / "real" / "b.jpg"), str(inp / "z elsewhere" / "c.jpg")]
    plain = run(Options(input=inp, output=tmp_path / "p", algorithms=["phash_8"], workers=1, no_report=True))
    assert plain.files == res.files[:2]


def test_a_link_to_a_folder_above_the_input_does_not_scan_the_input_twice(tmp_path):
    """A followed link to an ancestor (in/up -> the folder that holds in/) leads back into
    the input by a real folder, not by a link: each file came out twice, a cluster of
    "copies" of itself at every threshold."""
    from mhc.discover import discover

    inp = tmp_path / "in"
    save(photo(1), inp / "real" / "a.jpg")
    os.symlink(tmp_path, inp / "real" / "up")
    save(photo(2), tmp_path / "beside" / "b.jpg")  # reached only through the link: scanned once
    found = discover(inp, follow_symlinks=True)
    assert [f.path for f in found.files] == [str(inp / "real" / "a.jpg"), str(inp / "real" / "up" / "beside" / "b.jpg")]


def test_a_symlinked_file_found_by_its_own_path_is_listed_once(tmp_path):
    """A link to a file also found by its own path used to come out as a cluster of two
    "copies" at threshold 0, and the report could mark the link ("a link.jpg" sorts first)
    as the one to keep: deleting the other, the real file, would break the link and lose
    the picture. The file is listed once, by its own path; hard links stay two names."""
    inp = tmp_path / "in"
    save(photo(1), inp / "photo.jpg")
    os.symlink("photo.jpg", inp / "a link.jpg")
    os.link(inp / "photo.jpg", inp / "hard link.jpg")
    outside = save(photo(2), tmp_path / "elsewhere" / "c.jpg")
    os.symlink(outside, inp / "c1.jpg")  # the only way to it: kept
    os.symlink(outside, inp / "c2.jpg")  # a second way: left out
    r = run_cli("-i", str(inp), "-o", str(tmp_path / "out"), "-a", "phash_8", "--no-cache")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["files"] == [str(inp / n) for n in ("c1.jpg", "hard link.jpg", "photo.jpg")]
    assert summary["aliases"] == {str(inp / "a link.jpg"): str(inp / "photo.jpg"), str(inp / "c2.jpg"): str(inp / "c1.jpg")}
    assert summary["counts"]["aliases"] == 2
    text = " ".join(r.stdout.split())
    assert f"2 symlink(s) to files also found by another path: each such file is shown once, under that path (e.g. " \
           f"{inp / 'a link.jpg'} -> {inp / 'photo.jpg'})" in text, text
    names = {p.name for p in (tmp_path / "out" / "phash_8").rglob("*.jpg")}
    assert not any(n.startswith(("a link", "c2")) for n in names) and any(n.startswith("hard link") for n in names)
    index = " ".join((tmp_path / "out" / "index.html").read_text().split())
    assert "2 symlink(s) to files also found by another path" in index
    # a hard link is a name of its own, but its "copy" is the same file: said wherever it shows
    assert summary["counts"]["hard_links"] == 1 and summary["file_info"]["same_file_as"] == [None, None, 1]
    assert (f"1 hard link(s): files found under more than one name, each name shown (as copies); removing a name "
            f"frees no space (e.g. {inp / 'hard link.jpg'} and {inp / 'photo.jpg'} are one file)") in text, text
    assert "1 hard link(s)" in index
    page = (tmp_path / "out" / "report" / "phash_8" / "thr_000.html").read_text()
    assert page.count("same file as hard link.jpg (a hard link: removing one frees no space)") == 1
    assert "mhc ignore" not in page  # "not a duplicate?" of two names of one file: not offered
    r = run_cli("pairs", "-o", str(tmp_path / "out"), "-a", "phash_8", "-t", "0", "-f", "json")
    rows = {(row["path_a"], row["path_b"]): row["same_file"] for row in json.loads(r.stdout)}
    assert rows == {(str(inp / "hard link.jpg"), str(inp / "photo.jpg")): True}, r.stdout


def test_special_files_and_dotted_names_are_reported_or_hashed(tmp_path):
    inp = tmp_path / "in"
    save(photo(1), inp / "..jpg", format="JPEG")  # a name that is all extension
    save(photo(2), inp / "plain.jpg")
    os.mkfifo(inp / "pipe.jpg")
    res = run(Options(input=inp, output=tmp_path / "o", algorithms=["phash_8"], workers=1, no_report=True))
    assert str(inp / "..jpg") in res.files
    assert [(e.path, e.reason) for e in res.errors] == [(str(inp / "pipe.jpg"), "not a regular file (a FIFO)")]


@pytest.mark.parametrize("how", ["new", "moved", "rewritten"])
def test_a_file_replaced_by_a_fifo_after_it_was_found_is_reported_not_waited_for(tmp_path, how):
    """A file found as a regular file and replaced by a FIFO (or a device) before it is read,
    during a long run: opening a FIFO waits for a writer, which hung the run for good where
    the file is read in the main process (the cache's check of a moved or rewritten file, and
    hashing of fewer than 24 pictures). Now it is one more file that cannot be used."""
    import threading
    import time

    from mhc import HashCache, HashPlan, compute_hashes, discover, parse_algorithms

    inp = tmp_path / "in"
    save(photo(1), inp / "keep.jpg")
    target = save(photo(2), inp / "a.jpg")
    plan = HashPlan.build(parse_algorithms(["phash_8"]))
    with HashCache(tmp_path / "c.sqlite") as cache:
        compute_hashes(discover(inp).files, plan, cache, workers=1)
    if how == "new":
        target = save(photo(3), inp / "b.jpg")
    elif how == "moved":  # the cache knows it by size, mtime and a digest of its content
        os.rename(target, inp / "b.jpg")
        target = inp / "b.jpg"
    else:  # the same size and mtime, another inode: the cache reads its digest
        st = os.stat(target)
        shutil.copy(target, tmp_path / "copy")
        os.replace(tmp_path / "copy", target)
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    files = discover(inp).files
    assert str(target) in [f.path for f in files]
    os.remove(target)
    os.mkfifo(target)

    done = threading.Event()

    def unblock():  # on a build that waits, from 20 s on: writers come and go (end of file)
        done.wait(20)
        while not done.wait(0.05):
            try:
                os.close(os.open(target, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # ENXIO: no reader waits now
                pass

    threading.Thread(target=unblock, daemon=True).start()
    start = time.monotonic()
    try:
        with HashCache(tmp_path / "c.sqlite") as cache:
            res = compute_hashes(files, plan, cache, workers=1)
    finally:
        done.set()
    assert time.monotonic() - start < 10
    assert [(e.path, e.reason) for e in res.errors] == [(str(target), "not a regular file (a FIFO)")]
    assert str(inp / "keep.jpg") in res.values
