"""Every algorithm at every hash size it allows (up to 4,096 bits) runs end to end, each
under a watchdog so a hang fails instead of stalling CI; link names stay within 255 bytes
and unique (a 1024-bit hash is 256 hex digits)."""
from __future__ import annotations

import os
import signal

import pytest
from PIL import Image

from invariants import check
from mhc import Options, run
from mhc.algorithms import parse_algorithm
from mhc.errors import UsageError

from conftest import photo, run_cli, save

SIZES = (2, 4, 8, 12, 16, 20, 24, 32, 64)
ALGOS = [f"{n}_{s}" for n in ("ahash", "dhash", "dhash_vertical", "phash", "whash", "colorhash") for s in SIZES]


def allowed(spec: str) -> bool:
    try:
        parse_algorithm(spec)
        return True
    except UsageError:
        return False


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    inp = tmp_path_factory.mktemp("sizes") / "in"
    base = photo(1, (320, 240))
    save(base, inp / ("a long name " * 18 + ".jpg"))  # 217 bytes: the hash must still fit in 255
    save(base.resize((160, 120)), inp / "b" / ("a long name " * 18 + ".jpg"))  # same name, other folder
    save(base.transpose(Image.Transpose.FLIP_LEFT_RIGHT), inp / "mirrored.png")
    save(photo(2, (320, 240)), inp / "other.jpg")
    return inp


def _alarm(signum, frame):
    raise TimeoutError("hung")


@pytest.mark.parametrize("spec", [a for a in ALGOS if allowed(a)])
def test_every_size_runs_end_to_end_with_short_unique_link_names(folder, tmp_path, spec):
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(60)
    try:
        res = run(Options(input=folder, output=tmp_path / "o", algorithms=[spec], workers=1, isometric=True))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    algo = res.algorithms[0]
    assert len(algo.hexes[0]) == (parse_algorithm(spec).bits + 3) // 4  # summary keeps the whole hash
    files = {str(p) for p in folder.rglob("*") if p.is_file()}
    assert check(tmp_path / "o", readable=files) == []
    for thr in (tmp_path / "o" / spec).iterdir():
        names = [p.name for p in thr.rglob("*") if p.is_symlink()]
        assert len(names) == len(set(n.casefold() for n in names)) == len(files)
        assert all(len(os.fsencode(n)) <= 255 for n in names)


def test_phash_32_from_the_command_line(folder, tmp_path):
    """The command of issue 20 that never returned (also with --dry-run)."""
    for extra in ([], ["--dry-run"]):
        r = run_cli("-i", str(folder), "-o", str(tmp_path / "o"), "-a", "phash_32", *extra, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "phash_32 (1024 bits)" in r.stdout
