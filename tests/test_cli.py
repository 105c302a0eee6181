"""The command line as a user runs it: ./cluster.py in a subprocess."""
from __future__ import annotations

import json
import os

import pytest

from conftest import run_cli


def test_cluster_py_runs_end_to_end(corpus, tmp_path):
    out = tmp_path / "clusters"
    r = run_cli("-i", str(corpus), "-o", str(out), "-a", "phash_8", "-a", "dhash_16", "-j", "2")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    # the summary table a user picks a folder from
    assert "phash_8 (64 bits)" in r.stdout and "dhash_16 (256 bits)" in r.stdout
    assert "largest cluster" in r.stdout and "unclustered" in r.stdout
    assert "1 could not be read" in r.stdout and "errors.csv" in r.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["algorithms"]) == ["phash_8", "dhash_16"]
    thr = [t["threshold"] for t in summary["algorithms"]["dhash_16"]["thresholds"]]
    assert thr == list(range(0, 109, 3))
    for t in summary["algorithms"]["phash_8"]["thresholds"]:
        assert (out / "phash_8" / t["folder"]).is_dir()


def test_rerun_uses_the_cache(corpus, tmp_path):
    out = tmp_path / "o"
    assert run_cli("-i", str(corpus), "-o", str(out), "-a", "phash_8", "-j", "1").returncode == 0
    r = run_cli("-i", str(corpus), "-o", str(out), "-a", "phash_8", "-j", "1")
    assert r.returncode == 0
    assert "0 decoded" in r.stdout and "from the cache" in r.stdout


def test_help_is_documentation():
    r = run_cli("--help")
    assert r.returncode == 0
    for text in ("--input", "--algo", "--thresholds", "--preset", "--dry-run", "Examples", "thr_NNN_unclustered_U"):
        assert text in r.stdout, text


def test_dry_run_prints_and_writes_nothing(corpus, tmp_path):
    out = tmp_path / "o"
    r = run_cli("-i", str(corpus), "-o", str(out), "-a", "phash_8", "--dry-run", "--no-cache")
    assert r.returncode == 0 and "dry run: nothing written" in r.stdout
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["-a", "foohash_8"], "unknown algorithm 'foohash'"),
        (["-a", "phash"], "is not NAME_SIZE"),
        (["-a", "whash_12"], "whash size must be a power of 2"),
        (["-a", "phash_8", "-t", "10:2:1"], "empty range"),
        (["-a", "phash_8", "-t", "a:b"], "is not START:STOP:STEP"),
        (["-a", "phash_8", "-t", "0:10:0"], "STEP must be positive"),
        (["--preset", "nope"], "unknown preset"),
        (["-j", "-3"], "--workers"),
        (["--link", "teleport"], "--link must be one of"),
    ],
)
def test_bad_options_are_refused_clearly(corpus, tmp_path, args, message):
    r = run_cli("-i", str(corpus), "-o", str(tmp_path / "o"), *args)
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "o").exists()


def test_missing_input_and_empty_input(tmp_path):
    r = run_cli("-i", str(tmp_path / "nowhere"), "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("hi")
    r = run_cli("-i", str(tmp_path / "empty"), "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and "no images or videos found" in r.stderr and "Traceback" not in r.stderr


def test_unknown_flag_is_refused():
    r = run_cli("--frobnicate")
    assert r.returncode == 2 and "No such option" in r.stderr and "Traceback" not in r.stderr


def test_console_script_is_the_same_tool():
    import shutil
    import subprocess
    import sys

    exe = shutil.which("mhc", path=os.path.dirname(sys.executable))
    assert exe, "the mhc console script is installed with the package"
    r = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--thresholds" in r.stdout


def test_default_paths_are_data_images_and_data_output(tmp_path):
    # run from a folder that has data/images, as the README's first command does
    work = tmp_path / "proj"
    (work / "data" / "images").mkdir(parents=True)
    from conftest import photo, save

    save(photo(1), work / "data" / "images" / "a.jpg")
    save(photo(1).resize((100, 75)), work / "data" / "images" / "b.jpg")
    r = run_cli("-a", "phash_8", cwd=work)
    assert r.returncode == 0, r.stderr
    assert (work / "data" / "output" / "phash_8" / "thr_000_unclustered_0" / "001_2").is_dir() or any(
        (work / "data" / "output" / "phash_8").glob("thr_019_unclustered_0"))
