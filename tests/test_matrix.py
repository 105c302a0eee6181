"""Every clustering, video and output option alone and in pairs, on images only and on
images with videos, into a fresh output and over an output made with other options:
each run either works and its output holds every invariant of the layout, or is refused
before hashing with one clear line. Every run is under a watchdog."""
from __future__ import annotations

import faulthandler
import itertools
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance

from invariants import check
from mhc import HashCache, Options, UsageError, run
from mhc.options import default_cache_path

from conftest import make_video, photo, run_cli, save, tree_digest

SETTINGS: list[tuple[str, dict]] = [
    ("thresholds", {"thresholds": "0:12:3"}),
    ("isometric", {"isometric": True}),
    ("crops", {"crops": True}),
    ("verify", {"verify": "ssim"}),
    ("max-cluster-size", {"max_cluster_size": 3}),
    ("complete", {"linkage": "complete"}),
    ("hdbscan", {"method": "hdbscan"}),
    ("min-cluster-size", {"min_cluster_size": 3}),
    ("require", {"require": ["phash_8:10", "dhash_8:8"]}),
    ("cross-media", {"cross_media": True}),
    ("video-match", {"video_match": "frames"}),
    ("duration-0", {"duration_tolerance": 0.0}),
    ("frames", {"frames": 4}),
    ("video-exact", {"video_exact": True}),
    ("exact", {"exact": True}),
    ("copy", {"link": "copy"}),
    ("hardlink", {"link": "hardlink"}),
    ("relative", {"relative_links": True}),
    ("no-unclustered", {"no_unclustered_links": True}),
    ("changed-only", {"changed_only": True}),
    ("no-report", {"no_report": True}),
    ("max-pixels", {"max_pixels": 50_000}),
    ("follow-symlinks", {"follow_symlinks": True}),
    ("colorhash", {"algorithms": ["colorhash_3", "ahash_8"]}),
]
HDBSCAN_REFUSES = {"thresholds", "isometric", "crops", "verify", "max-cluster-size", "complete", "cross-media"}


def refused(names: set[str]) -> bool:
    """Which combinations must be refused before hashing (see mhc.options.HONOURED)."""
    if "hdbscan" in names:
        return bool(names & HDBSCAN_REFUSES)
    return "min-cluster-size" in names


def combos() -> list[tuple[str, ...]]:
    singles = [(n,) for n, _ in SETTINGS]
    keys = dict(SETTINGS)
    pairs = [(a, b) for (a, _), (b, _) in itertools.combinations(SETTINGS, 2) if not set(keys[a]) & set(keys[b])]
    return singles + pairs


@pytest.fixture(scope="module")
def scratch_root(tmp_path_factory):
    """Inputs and outputs of the matrix, on one filesystem (hard links): a RAM-backed tmpfs
    when there is one (hundreds of small trees; this checks the logic, not the disk)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        d = Path(tempfile.mkdtemp(prefix="mhc-matrix-", dir=shm))
        yield d
        shutil.rmtree(d, ignore_errors=True)
    else:
        yield tmp_path_factory.mktemp("matrix-scratch")


@pytest.fixture(scope="module")
def media(scratch_root):
    """Images (near-duplicates, a mirror, unrelated ones, one too big for --max-pixels, a
    HEIC), a folder linked twice and one linked from outside; and a second folder with
    three videos (a clip, its re-encode, another) and a still of the clip."""
    root = scratch_root / "media"
    imgs = root / "images"
    a, b = photo(1, (240, 180)), photo(2, (240, 180))
    save(a, imgs / "a.jpg", quality=92)
    save(a.resize((160, 120)), imgs / "a small.jpg")
    save(ImageEnhance.Brightness(a).enhance(1.1), imgs / "a bright.png")
    save(a.transpose(Image.Transpose.FLIP_LEFT_RIGHT), imgs / "a mirrored.png")
    save(b, imgs / "real" / "b.jpg")
    save(b, imgs / "real" / "b recompressed.jpg", quality=40)
    save(photo(3, (240, 180)), imgs / "c.jpg")
    save(photo(4, (600, 400)), imgs / "big.png")  # 240,000 pixels: refused by --max-pixels 50000
    try:
        import pillow_heif  # noqa: F401

        save(a, imgs / "a.heic")
    except ImportError:
        pass
    os.symlink("real", imgs / "z linked")  # the same real folder again (relative: also in the copy)
    outside = root / "outside"
    save(photo(5, (240, 180)), outside / "elsewhere.jpg")
    os.symlink(outside, imgs / "z outside")  # scanned only with --follow-symlinks
    both = root / "both"
    shutil.copytree(imgs, both, symlinks=True)
    clip = [photo(7, (240, 180)), photo(8, (240, 180))]
    make_video(both / "clip.mp4", clip, seconds=1.0, size=(240, 180))
    make_video(both / "clip small.mp4", clip, seconds=1.0, size=(160, 120), bitrate=100_000)
    make_video(both / "other.mp4", [photo(9, (240, 180)), photo(10, (240, 180))], seconds=1.0, size=(240, 180))
    save(photo(7, (240, 180)), both / "still of clip.jpg")
    return {"images": imgs, "both": both}


def readable(folder: Path, opts: dict) -> tuple[set[str], dict[str, str]]:
    files = {}
    for dirpath, dirnames, names in os.walk(folder, followlinks=opts.get("follow_symlinks", False)):
        if "z linked" in Path(dirpath).parts:
            continue
        for n in names:
            p = os.path.join(dirpath, n)
            kind = "video" if n.endswith(".mp4") else "image"
            if n == "big.png" and opts.get("max_pixels"):
                continue
            files[p] = kind
    return set(files), files


def _alarm(signum, frame):
    raise TimeoutError("a run took longer than the watchdog allows")


@pytest.mark.parametrize("which", ["images", "both"])
def test_every_option_alone_and_in_pairs(media, scratch_root, which):
    inp = media[which]
    tmp_path = scratch_root / f"out-{which}"
    before = tree_digest(inp)
    mark = (str(inp / "real" / "b.jpg"), str(inp / "real" / "b recompressed.jpg"))
    with HashCache(default_cache_path()) as cache:  # a "not a duplicate" pair, kept apart everywhere
        cache.ignore(*mark)
    keys = dict(SETTINGS)
    rolling = tmp_path / "rolling"
    failures: list[str] = []
    faulthandler.dump_traceback_later(1500, exit=True)  # the last resort if a run hangs in C code
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for k, combo in enumerate(combos()):
            kw = {"algorithms": ["phash_8", "dhash_8"], "workers": 1, "thresholds": "0:12:2"}
            for name in combo:
                kw.update(keys[name])
            if "thresholds" not in combo and "hdbscan" in combo:
                kw.pop("thresholds")
            for out in (tmp_path / f"fresh{k}", rolling):
                stages: list[str] = []
                signal.alarm(60)
                try:
                    run(Options(input=inp, output=out, **kw), progress=lambda e: stages.append(e.stage),
                        background_cleanup=False)
                except UsageError as e:
                    if not refused(set(combo)):
                        failures.append(f"{combo}: refused: {e}")
                    elif "hash" in stages or out.exists() and out != rolling:
                        failures.append(f"{combo}: refused only after hashing started")
                    continue
                except Exception as e:  # noqa: BLE001 - every failure of the matrix is reported together
                    failures.append(f"{combo} -> {out.name}: {type(e).__name__}: {e}")
                    continue
                finally:
                    signal.alarm(0)
                if refused(set(combo)):
                    failures.append(f"{combo}: should have been refused")
                    continue
                files, kinds = readable(inp, kw)
                problems = check(out, readable=files, kinds=kinds, ignored=[mark])
                failures += [f"{combo} -> {out.name}: {p}" for p in problems]
            shutil.rmtree(tmp_path / f"fresh{k}", ignore_errors=True)
    finally:
        signal.signal(signal.SIGALRM, old)
        faulthandler.cancel_dump_traceback_later()
        with HashCache(default_cache_path()) as cache:
            cache.unignore(*mark)
    assert tree_digest(inp) == before  # the input is never touched
    assert not failures, "\n".join(failures[:40]) + f"\n({len(failures)} problems)"


@pytest.mark.parametrize("args, message", [
    (["--method", "hdbscan", "--isometric"], "--isometric does not apply to --method hdbscan"),
    (["--min-cluster-size", "3"], "--min-cluster-size does not apply to the threshold sweep"),
    (["--verify", "ssim:2"], "from -1 to 1"),
    (["--require", "phash_8:10"], "two or more"),
])
def test_refusals_come_before_hashing_on_the_command_line(media, tmp_path, args, message):
    r = run_cli("-i", str(media["images"]), "-o", str(tmp_path / "o"), *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert "Hashing" not in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_require_with_videos_writes_its_combined_folders(media, tmp_path):
    """The command of issue 12 that died with a reshape error."""
    out = tmp_path / "o"
    r = run_cli("-i", str(media["both"]), "-o", str(out), "--require", "phash_8:8", "--require", "dhash_8:8", "-q")
    assert r.returncode == 0, r.stderr
    folders = sorted(p.name for p in (out / "combined_phash_8-8_dhash_8-8").iterdir())
    assert [f.split("_unclustered")[0] for f in folders] == ["thr_025", "thr_050", "thr_075", "thr_100"]
    files, kinds = readable(media["both"], {})
    assert check(out, readable=files, kinds=kinds) == []
