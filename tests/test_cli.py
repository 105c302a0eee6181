"""The command line as a user runs it: ./cluster.py in a subprocess."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, photo, run_cli, save, tree_digest


def test_cluster_py_runs_end_to_end(corpus, tmp_path):
    out = tmp_path / "clusters"
    r = run_cli("-i", str(corpus), "-o", str(out), "-a", "phash_8", "-a", "dhash_16", "-j", "2",
                env={"COLUMNS": "80"})
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    # the summary table a user picks a folder from
    assert "phash_8 (64 bits)" in r.stdout and "dhash_16 (256 bits)" in r.stdout
    assert "largest cluster" in r.stdout and "unclustered" in r.stdout
    assert "1 could not be read" in r.stdout and "errors.csv" in r.stdout
    # lines with a path are never broken (80 columns here, the width rich takes when stdout is not a terminal)
    broken = corpus / "misc" / "broken.jpg"
    assert len(str(broken)) > 60
    assert any(line.startswith("1 file(s) could not be used, e.g. " + str(broken) + ": ") for line in r.stdout.splitlines())
    assert f"output: {out}\n" in r.stdout and f"report: {out / 'index.html'}\n" in r.stdout
    # the folder to open first: its whole path on one line, to paste into a viewer
    first = [line for line in r.stdout.splitlines() if line.startswith("▶ Open this first: ")]
    assert len(first) == 1 and Path(first[0].split(": ", 1)[1]).is_dir(), r.stdout
    assert Path(first[0].split(": ", 1)[1]).parent.parent == out
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
        (["-a", "phash"], "algorithm 'phash' needs a size: write for example -a phash_8 (64 bits) or phash_16 (256 bits)"),
        (["-a", "colorhash"], "needs a size: write for example -a colorhash_3"),
        (["-a", "pdq_8"], "PDQ has one size, 256 bits: write pdq_16"),
        (["-a", "p_hash"], "is not NAME_SIZE"),
        (["-a", "whash_12"], "whash size must be a power of 2"),
        (["-a", "phash_8", "-t", "10:2:1"], "empty range"),
        (["-a", "phash_8", "-t", "a:b"], "is not START:STOP:STEP"),
        (["-a", "phash_8", "-t", "0:10:0"], "STEP must be positive"),
        (["-a", "phash_8", "-t", "0:100:0"], "'0:100:0': STEP"),  # not rich's emoji for :100:
        (["-a", "phash_8", "-a", ","], "algorithm ',' is not NAME_SIZE"),
        (["--require", "phash_8,dhash_8:8", "--require", "ahash_8:3"], "one NAME_SIZE:BITS each; repeat it"),
        (["--require", "phash_8:8,dhash_8:8"], "one NAME_SIZE:BITS each; repeat it"),
        (["--preset", "nope"], "unknown preset"),
        (["-j", "-3"], "--workers"),
        (["--link", "teleport"], "--link must be one of"),
        (["-j", "abc"], "'-j' / '--workers': a whole number is needed, e.g. 4"),  # not click's "unable to parse"
        (["--duration-tolerance", "x"], "'--duration-tolerance': a number is needed, e.g. 0.05"),
    ],
)
def test_bad_options_are_refused_clearly(corpus, tmp_path, args, message):
    # 40 columns: the line must not be broken at the console's width (nor preceded by a blank
    # line from a progress display that never showed anything)
    r = run_cli("-i", str(corpus), "-o", str(tmp_path / "o"), *args, env={"COLUMNS": "40"})
    assert r.returncode == 2
    assert message in r.stderr
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("Error: "), r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", [["pairs", "-t", "4"], ["hydrus", "push", "-t", "4", "--dry-run"]])
def test_commands_of_one_algorithm_say_so_for_a_list(corpus, tmp_path, command):
    """A run's -a takes a list; pairs and hydrus push take one, and said of "phash_8,dhash_8"
    that it "is not NAME_SIZE", as if the names were wrong. A run's list of one
    ("phash_8,") is one algorithm there too."""
    cache = str(tmp_path / "c.sqlite")
    env = {"HYDRUS_API_KEY": "0" * 64}
    for listed in ("phash_8,dhash_8", "phash_8 dhash_8", "phash_8, dhash_8,"):
        r = run_cli(*command, "-i", str(corpus), "--cache", cache, "-a", listed, env=env)
        assert r.returncode == 2 and r.stderr == (f"Error: one algorithm here, not a list ({listed!r}); run the "
                                                  f"command once per algorithm, e.g. -a phash_8\n"), r.stderr
    assert not (tmp_path / "c.sqlite").exists()  # refused before hashing
    r = run_cli("pairs", "-t", "4", "-i", str(corpus), "--cache", cache, "-a", "phash_8,")
    assert r.returncode == 0 and r.stdout.startswith("path_a,path_b,distance"), r.stderr


def test_algorithms_may_be_listed_in_one_option(corpus, tmp_path):
    """-a phash_8,dhash_8 (or "phash_8 dhash_8"), as in mhc.toml's algo = "phash_8 dhash_8"."""
    r = run_cli("-i", str(corpus), "-o", str(tmp_path / "o"), "-a", "phash_8,dhash_8", "-a", "whash_8 phash_8", "-q")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert list(summary["algorithms"]) == ["phash_8", "dhash_8", "whash_8"]


def test_python_m_mhc_is_the_mhc_command(tmp_path):
    """`python -m mhc` (a Python whose scripts are not on PATH) said "'mhc' is a package and
    cannot be directly executed"; it is the command, options, errors and exit statuses alike."""
    m = [sys.executable, "-m", "mhc"]
    r = subprocess.run([*m, "--version"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.startswith("mhc "), r.stderr
    r = subprocess.run([*m, "-i", str(tmp_path / "nowhere"), "-o", str(tmp_path / "o")], capture_output=True,
                       text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.startswith("Error: ") and len(r.stderr.splitlines()) == 1, r.stderr
    for m in (m, [sys.executable, "-m", "mhc.cli"]):  # (the module run as __main__ had no subcommands)
        r = subprocess.run([*m, "pairs", "--help"], capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert r.returncode == 0 and "Usage: mhc pairs" in r.stdout, (m, r.stderr)


def test_missing_input_and_empty_input(tmp_path):
    r = run_cli("-i", str(tmp_path / "nowhere"), "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("hi")
    r = run_cli("-i", str(tmp_path / "empty"), "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and "no images or videos found" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("-i", str(tmp_path / "empty" / "readme.txt"), "-o", str(tmp_path / "o"))  # a file for the folder
    assert r.returncode == 2 and r.stderr.strip() == (
        f"Error: input {tmp_path / 'empty' / 'readme.txt'} is a file, not a folder; mhc scans folders: pass the one "
        f"that holds it (-i {tmp_path / 'empty'})")


@pytest.mark.parametrize("args, message", [
    (["--zzz"], "No such option: --zzz; mhc -h lists the options"),
    (["--inpt", "x"], "Possible options: --input"),
    (["-j", "many"], "Invalid value for '-j' / '--workers'"),
    (["-a"], "Option '-a' requires an argument"),
    (["pairs", "--zzz"], "mhc pairs -h lists the options"),
    (["evaluate", "out", "--labels"], "Option '--labels' requires an argument; mhc evaluate -h lists the options"),
    (["cache", "frob"], "No such command 'frob'"),
    (["config", "-a", "phash_16"], "No such option: -a here; a run's options go before the command: mhc -a ... config"),
    (["config", "--zz"], "No such option: --zz; mhc config -h lists the options"),
])
def test_usage_errors_are_one_line_not_a_usage_panel(args, message):
    # click's own parse errors: typer would draw a six-line boxed panel; mhc says one line
    r = run_cli(*args, env={"COLUMNS": "40"})
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("Error: "), r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize("args, said", [
    (["{photos}"], "{photos}: the folder to scan is given with -i (mhc -i {photos})"),
    (["-i", "{photos}", "{fresh}"], "{fresh}: an output folder is given with -o (mhc -o {fresh})"),
    (["-o", "{fresh}", "{photos}"], "{photos}: the folder to scan is given with -i (mhc -i {photos})"),
    (["report", "{out}"], "{out}: an output folder is given with -o (mhc report -o {out})"),
    (["pairs", "-a", "phash_8", "-t", "4", "{out}"], "{out}: an output folder is given with -o (mhc pairs -o {out})"),
    (["pairs", "-a", "phash_8", "-t", "4", "{photos}"], "{photos}: the folder to scan is given with -i (mhc pairs -i {photos})"),
    (["cache", "info", "{out}"], "{out}: an output folder is given with -o (mhc cache info -o {out})"),
    (["{photos}/misc/unrelated 0.jpg"], "{photos}/misc/unrelated 0.jpg is a file; mhc scans folders: give the one "
                                        "that holds it with -i (mhc -i {photos}/misc)"),
])
def test_a_folder_without_its_option_is_told_which_option(corpus, tmp_path, args, said):
    """`mhc ~/Pictures` (fdupes and czkawka take their folders so): click said "No such
    command '/home/me/Pictures'", or "unexpected extra argument" after a subcommand."""
    out = tmp_path / "out"
    assert run_cli("-q", "-i", str(corpus), "-o", str(out), "-a", "phash_8").returncode == 0
    names = {"photos": str(corpus), "out": str(out), "fresh": str(tmp_path / "fresh")}
    before = tree_digest(out)
    r = run_cli(*(a.format(**names) for a in args), cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("Error: " + said.format(**names)), r.stderr
    assert len(r.stderr.splitlines()) == 1 and r.stdout == ""
    assert tree_digest(out) == before and not (tmp_path / "fresh").exists()


def test_a_working_folder_replaced_under_the_shell_is_one_line(corpus, tmp_path):
    """A shell left in a threshold folder of an output that a run has since replaced: the
    next `mhc` (data/images, mhc.toml, any relative path) was "mhc failed unexpectedly:
    FileNotFoundError" (exit 70)."""
    import subprocess
    import sys

    out = tmp_path / "out"
    assert run_cli("-q", "-i", str(corpus), "-o", str(out), "-a", "phash_8").returncode == 0
    inside = next((out / "phash_8").iterdir())

    def in_a_folder_since_removed():
        os.chdir(inside)
        shutil.rmtree(out)  # (as the run that replaced the output removes its old tree)

    r = subprocess.run([sys.executable, str(ROOT / "cluster.py"), "-i", str(corpus), "-o", str(out), "-q"],
                       capture_output=True, text=True, preexec_fn=in_a_folder_since_removed, timeout=120)
    assert r.returncode == 2 and r.stderr.strip() == (
        "Error: the current folder no longer exists (deleted, or a folder of an mhc output that a run has replaced "
        "since you entered it); cd to a folder that exists and run again"), r.stderr
    assert not out.exists()
    gone = tmp_path / "gone"

    def in_a_removed_folder():
        gone.mkdir()
        os.chdir(gone)
        gone.rmdir()

    r = subprocess.run([sys.executable, str(ROOT / "cluster.py"), "--version"], capture_output=True, text=True,
                       preexec_fn=in_a_removed_folder, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("mhc "), r.stderr  # what needs no folder still works


@pytest.mark.parametrize("args, said", [
    (["-o", "{out}", "cache", "clear"], "-o/--output before 'cache'"),
    (["--output={out}", "report"], "-o/--output before 'report'"),
    (["-i", "{photos}", "pairs", "-a", "phash_8", "-t", "4"], "-i/--input before 'pairs'"),
])
def test_a_runs_option_before_a_command_is_refused_not_ignored(corpus, tmp_path, args, said):
    """`mhc -o out cache clear` cleared the default cache, not out's: the option before the
    command was the run's, and the command went on with its own defaults."""
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    out = tmp_path / "out"
    assert run_cli("-q", "-i", str(corpus), "-o", str(out), "-a", "phash_8", env=env).returncode == 0
    before = tree_digest(tmp_path)
    r = run_cli(*(a.format(out=out, photos=corpus) for a in args), cwd=tmp_path, env=env)
    assert r.returncode == 2 and r.stderr.startswith(f"Error: {said} would be ignored: a command's options go "
                                                    f"after it"), r.stderr
    assert r.stdout == "" and tree_digest(tmp_path) == before  # the default cache kept its hashes
    shown = run_cli("-a", "phash_16", "config", cwd=tmp_path)  # config shows the run's options: they go first
    assert shown.returncode == 0 and 'algo = ["phash_16"]' in shown.stdout


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


# -- the command line as a user meets it (issue 14) ---------------------------------------
COMMANDS = [[], ["cache"], ["cache", "info"], ["cache", "clear"], ["report"], ["pairs"], ["ignore"], ["evaluate"],
            ["config"], ["hydrus"], ["hydrus", "push"]]


def _help_texts(path: list[str]) -> list[str]:
    """The raw help strings (before rendering) of a command and its options."""
    import click

    from mhc.cli import app, main  # noqa: F401
    import mhc.commands  # noqa: F401
    import typer.main

    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    texts = [cmd.help or "", cmd.epilog or ""]
    texts += [p.help or "" for p in cmd.params if isinstance(p, click.Option)]
    return texts


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "mhc")
def test_help_shows_everything_in_brackets_and_flags_as_flags(path):
    import re

    from rich.markup import render

    r = run_cli(*path, "--help")
    assert r.returncode == 0, r.stderr
    shown = " ".join(r.stdout.replace("│", " ").split())
    for text in _help_texts(path):
        plain = render(text).plain  # what the author wrote, markup escapes removed
        for snippet in re.findall(r"\S*\[[^\]\s]+\]\S*", plain):
            assert snippet.strip(".,;:)(") in shown, (path, snippet)
    assert "<bool>" not in r.stdout


@pytest.mark.parametrize("path", [p for p in COMMANDS if p], ids=" ".join)
def test_command_help_paragraphs_wrap_as_paragraphs(path):
    """A docstring's line breaks must not survive into --help: at a wider terminal they left
    half-empty lines in the middle of a sentence."""
    env = {"COLUMNS": "200"}
    r = run_cli(*path, "--help", env=env)
    assert r.returncode == 0, r.stderr
    paragraphs = [par for par in _help_texts(path)[0].split("\n\n") if par]
    lines = [line.strip() for line in r.stdout.splitlines()]
    for par in paragraphs:
        assert "\n" not in par, (path, par)
        if len(par) < 190:  # fits a 200-column line: shown as one
            assert any(line == par.replace("\\[", "[") for line in lines), (path, par, r.stdout)


def test_main_help_groups_its_options_and_names_the_extras():
    r = run_cli("--help")
    for panel in ("Input and output", "Algorithms and thresholds", "Videos", "Precision", "Large collections",
                  "Output format"):
        assert panel in r.stdout
    for needed in ("mhc[dask]", "mhc[precision]", "Exit status"):
        assert needed in " ".join(r.stdout.replace("│", " ").split())
    assert "[tool.mhc]" in run_cli("config", "--help").stdout


def test_counts_add_up_and_say_what_came_from_the_cache(corpus, tmp_path):
    import re

    cache = str(tmp_path / "c.sqlite")
    assert run_cli("-i", str(corpus), "-o", str(tmp_path / "o"), "--cache", cache, "-a", "dhash_8", "-q").returncode == 0
    r = run_cli("-i", str(corpus), "-o", str(tmp_path / "o"), "--cache", cache, "-a", "dhash_8", "-a", "whash_16")
    line = " ".join(r.stdout.split())
    m = re.search(r"(\d+) files found: (\d+) decoded, (\d+) from the cache, (\d+) could not be read", line)
    assert m, line
    found, decoded, cached, failed = map(int, m.groups())
    assert decoded + cached + failed == found and failed == 1 and decoded == found - 1
    assert f"hashes computed: whash_16 for {decoded} files; from the cache: dhash_8" in line
    index = (tmp_path / "o" / "index.html").read_text()
    assert f"{found} files found: {decoded} decoded now, 0 from the cache, 1 could not be read" in index


def test_pairs_takes_the_input_from_the_output_folder(corpus, tmp_path):
    out = tmp_path / "o"
    assert run_cli("-i", str(corpus), "-o", str(out), "-a", "phash_8", "-q").returncode == 0
    r = run_cli("pairs", "-o", str(out), "-a", "phash_8", "-t", "6", "--format", "json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert rows and set(rows[0]) == {"path_a", "path_b", "distance", "file_a", "file_b", "probable_original",
                                     "same_file"}
    assert not any(x["same_file"] for x in rows)  # (no hard links here)
    assert set(rows[0]["file_a"]) == {"width", "height", "bytes", "format", "taken", "mtime_ns"}
    for x in rows:  # the probable original of a pair is its larger picture
        px = lambda f: f["width"] * f["height"]  # noqa: E731
        bigger = x["path_a"] if px(x["file_a"]) >= px(x["file_b"]) else x["path_b"]
        assert px(x["file_a"]) == px(x["file_b"]) or x["probable_original"] == bigger
    assert all(x["path_a"].startswith(str(corpus)) for x in rows)
    csv_out = subprocess.run([sys.executable, str(ROOT / "cluster.py"), "pairs", "-o", str(out), "-a", "phash_8", "-t",
                              "6"], cwd=tmp_path, capture_output=True, check=True).stdout
    assert csv_out.startswith(b"path_a,path_b,distance\n") and b"\r" not in csv_out  # lines for cut and awk


def test_pairs_without_algo_or_threshold_lists_the_folder_the_output_says_to_open_first(corpus, tmp_path):
    """`mhc pairs -o OUT` alone: the pairs of OUT's "open this first" folder (stderr says
    which, and that OUT was made with --isometric the command lacks); -a alone: the folder
    OUT suggests for it; -t alone: the algorithm to open first. Without an output to read
    it from, or one with no such folder, one line that says to pass -a and -t."""
    work = tmp_path / "work"
    out = work / "data" / "output"
    assert run_cli("-i", str(corpus), "-o", str(out), "-a", "phash_8,dhash_8", "--isometric", "-q").returncode == 0
    doc = json.loads((out / "summary.json").read_text())
    key, t = doc["recommended"]["key"], doc["recommended"]["threshold"]
    r = run_cli("pairs", cwd=work)  # data/output, as a run from here writes it
    broken = corpus / "misc" / "broken.jpg"  # (and the file that could not be used, with its reason)
    assert r.returncode == 0 and r.stderr.splitlines() == [
        f"mhc pairs: {key} at {t} bits, the folder data/output says to open first (made with --isometric: add it "
        "for the same links)", "mhc pairs: 1 file(s) could not be used; their pairs are not listed:",
        f"  {broken}: corrupt JPEG data: the header is an image's but the rest cannot be decoded"], r.stderr
    same = run_cli("pairs", "-o", str(out), "-a", key, "-t", str(t))
    assert r.stdout == same.stdout and r.stdout.count("\n") > 1  # some pairs, and the same ones
    s = doc["algorithms"]["dhash_8"]["suggested"]["threshold"]
    r = run_cli("pairs", "-o", str(out), "-a", "dhash_8", "--isometric", "--format", "json")
    assert r.returncode == 0 and r.stderr.splitlines()[0] == f"mhc pairs: dhash_8 at {s} bits, the folder {out} " \
                                                             "suggests for dhash_8"
    assert r.stdout == run_cli("pairs", "-o", str(out), "-a", "dhash_8", "-t", str(s), "--isometric", "--format",
                               "json").stdout
    r = run_cli("pairs", "-o", str(out), "-t", "0", "--isometric")
    assert r.returncode == 0 and r.stderr.startswith(f"mhc pairs: {key} at 0, the algorithm {out} says to open first")
    r = run_cli("pairs", "-o", str(out), "-t", "99")  # refused: its one line alone, not after the one of the folder
    assert r.returncode == 2 and r.stderr == (f"Error: -t 99: {key} has 64 bits; use at most 64, or a percentage up to "
                                              "100%\n"), r.stderr
    # the three wrong things: an algorithm the output has no folder of, no output here, an
    # output clustered without thresholds
    r = run_cli("pairs", "-o", str(out), "-a", "phash_16")
    assert r.returncode == 2 and r.stderr == (f"Error: {out} has no phash_16 folder; pass -t/--threshold BITS, or -a "
                                              "one of phash_8, dhash_8\n"), r.stderr
    r = run_cli("pairs", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("Error: pass -a/--algo and -t/--threshold, or -o an output "
                                                     "folder mhc wrote (data/output has no") and r.stdout == ""
    for given, said in ((["-a", "phash_8"], "pass -t/--threshold BITS too, or -o an output folder mhc wrote "
                                            "(data/output has no folders of a finished run to take the threshold it "
                                            "suggests for that algorithm from)"),
                        (["-t", "4"], "pass -a/--algo NAME_SIZE too, or -o an output folder mhc wrote (data/output "
                                      "has no folders of a finished run to take the algorithm to open first from)")):
        r = run_cli("pairs", *given, cwd=tmp_path)  # what is missing is named, not what was given
        assert r.returncode == 2 and r.stderr == f"Error: {said}\n", r.stderr
    for typo, where in (("-1", ["-o", str(out)]), ("x", []), ("1.5", [])):  # a -t of the wrong form is said as
        r = run_cli("pairs", *where, "-t", typo, cwd=tmp_path)                 # such, with or without an output
        assert r.returncode == 2 and r.stderr == (f"Error: -t {typo!r} is not one threshold; write bits (-t 20) "
                                                  f"or percent of the hash's bits (-t 10%)\n"), r.stderr
    assert run_cli("-i", str(corpus), "-o", str(tmp_path / "h"), "-a", "phash_8", "--method", "hdbscan",
                   "-q").returncode == 0
    r = run_cli("pairs", "-o", str(tmp_path / "h"))
    assert r.returncode == 2 and r.stderr == (f"Error: {tmp_path / 'h'} was clustered by hdbscan, without "
                                              "thresholds; pass -a/--algo and -t/--threshold\n"), r.stderr


def test_pairs_names_the_files_that_could_not_be_used_on_stderr(tmp_path):
    """The pairs go to stdout for a script; which files have none because they could not be
    read goes to stderr, the first ten by name with the reason."""
    inp = tmp_path / "in"
    save(photo(1), inp / "a.jpg")
    save(photo(1).resize((160, 120)), inp / "b.jpg")
    for i in range(12):
        (inp / f"note{i:02}.jpg").write_text("not a picture")
    r = run_cli("pairs", "-i", str(inp), "--cache", str(tmp_path / "c.sqlite"), "-a", "phash_8", "-t", "8", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.splitlines() == ["path_a,path_b,distance",
                                                           f"{inp / 'a.jpg'},{inp / 'b.jpg'},0"], r.stdout
    assert r.stderr.splitlines() == ["mhc pairs: 12 file(s) could not be used; their pairs are not listed:",
                                     *(f"  {inp / f'note{i:02}.jpg'}: not an image: the file holds text"
                                       for i in range(10)),
                                     "  ... and 2 more (a run lists them all in its errors.csv)"], r.stderr


def test_pairs_takes_a_threshold_in_bits_or_percent_and_checks_it_before_hashing(corpus, tmp_path):
    cache = tmp_path / "c.sqlite"
    common = ("pairs", "-i", str(corpus), "-o", str(tmp_path / "none"), "--cache", str(cache), "-a", "phash_8")
    bits = run_cli(*common, "-t", "6")
    percent = run_cli(*common, "-t", "10%")  # 10 % of 64 bits: 6, as in a sweep
    assert bits.returncode == percent.returncode == 0 and bits.stdout == percent.stdout, percent.stderr
    cache.unlink()
    for t, message in (("65", "phash_8 has 64 bits"), ("101%", "phash_8 has 64 bits"), ("0:5:1", "is not one threshold"),
                       ("-1", "is not one threshold"), ("six", "is not one threshold")):
        r = run_cli(*common, "-t", t)
        assert r.returncode == 2 and r.stderr.startswith("Error: -t ") and message in r.stderr, r.stderr
        assert not cache.exists()  # said before any hashing


def test_an_input_where_nothing_can_be_read_says_so_in_one_line(tmp_path):
    """Not five tables of zeros above the line that gives the reason."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jpg").write_text("not a picture")
    r = run_cli("-i", str(tmp_path / "in"), "-o", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    assert "(64 bits)" not in r.stdout and "threshold" not in r.stdout, r.stdout
    assert f"none of the files could be used (nothing to cluster), e.g. {tmp_path / 'in' / 'a.jpg'}: " in r.stdout


def test_report_of_an_output_whose_input_moved_says_where_the_links_point(corpus, tmp_path):
    inp = shutil.copytree(corpus, tmp_path / "in")
    out = tmp_path / "o"
    assert run_cli("-i", str(inp), "-o", str(out), "-a", "phash_8", "-q").returncode == 0
    assert run_cli("-i", str(inp), "-o", str(out), "-a", "phash_8", "-q").returncode == 0  # (nothing changed)
    thumbs = sorted(p.name for p in (out / ".mhc" / "thumbs").iterdir())
    inp.rename(tmp_path / "moved")
    r = run_cli("report", "-o", str(out))
    assert r.returncode == 0 and (out / "index.html").is_file(), r.stderr
    assert f"the input {inp} this output was made from is gone" in r.stderr and f"-o {out}" in r.stderr
    # "thumbnails still show": found by the names summary.json records (they come from the
    # files, which cannot be reached now), and none removed as unused
    assert sorted(p.name for p in (out / ".mhc" / "thumbs").iterdir()) == thumbs
    pages = [p.read_text() for p in (out / "report" / "phash_8").glob("*.html")]
    assert pages and not any("no preview" in page for page in pages)


def test_a_reader_that_stops_early_ends_quietly_with_status_1(corpus, tmp_path):
    """`mhc pairs | head`: the reader closes the pipe before mhc is done writing. That is
    no fault to report (no traceback, no line), but the output was cut short, so the status
    is 1 (as documented), never 0, and the run's own output folder is whole."""
    out = tmp_path / "o"
    for args in (("pairs", "-i", str(corpus), "-o", str(out), "-a", "phash_8", "-t", "6"),
                 ("-i", str(corpus), "-o", str(out), "-a", "phash_8")):
        if args[0] == "pairs":
            assert run_cli("-i", str(corpus), "-o", str(out), "-a", "phash_8", "-q").returncode == 0
        p = subprocess.Popen([sys.executable, str(ROOT / "cluster.py"), *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "120"})
        p.stdout.close()  # closed before mhc writes a byte: its first write meets a closed pipe
        err = p.stderr.read().decode()
        assert p.wait(timeout=300) == 1
        assert "Traceback" not in err and "Error" not in err and "unexpectedly" not in err, err
        assert (out / "summary.json").is_file()


def test_pairs_csv_names_a_file_whose_name_is_not_utf8_by_its_own_bytes(tmp_path):
    """A CSV row is for a script: `caf\\xe9.jpg` (the escaped text it printed) names no file;
    the name's own bytes do, as in errors.csv. A real shell loop opens the files it reads."""
    inp = tmp_path / "in"
    save(photo(7), inp / "plain.jpg")
    odd = os.fsencode(str(inp)) + b"/caf\xe9 latin-1.jpg"
    shutil.copy(inp / "plain.jpg", os.fsdecode(odd))
    assert run_cli("-i", str(inp), "-o", str(tmp_path / "o"), "-a", "phash_8", "-q").returncode == 0
    r = subprocess.run([sys.executable, str(ROOT / "cluster.py"), "pairs", "-o", str(tmp_path / "o"), "-a", "phash_8",
                        "-t", "0"], capture_output=True, timeout=300)  # bytes: no decoding on the way
    assert r.returncode == 0 and odd in r.stdout and b"\\xe9" not in r.stdout, r.stdout
    loop = subprocess.run(["bash", "-c", 'tail -n +2 | while IFS=, read -r a b d; do test -f "$a" && test -f "$b" '
                           '&& echo "both found at $d"; done'], input=r.stdout, capture_output=True)
    assert loop.stdout == b"both found at 0\n", loop


def test_pairs_csv_on_a_terminal_shows_control_bytes_of_names_escaped(tmp_path):
    """A name holding ESC [ 2 J (clear screen) or a colour went to the terminal raw and acted
    there; on a terminal (a real pty) it is shown escaped, piped it stays the name's bytes."""
    import pty
    inp = tmp_path / "in"
    save(photo(7), inp / "plain.jpg")
    shutil.copy(inp / "plain.jpg", inp / "evil \x1b[2J\x1b[31mred.jpg")
    assert run_cli("-i", str(inp), "-o", str(tmp_path / "o"), "-a", "phash_8", "-q").returncode == 0
    args = [sys.executable, str(ROOT / "cluster.py"), "pairs", "-o", str(tmp_path / "o"), "-a", "phash_8", "-t", "0"]
    main, sub = pty.openpty()
    try:
        p = subprocess.run(args, stdout=sub, stderr=subprocess.PIPE, timeout=300)
        os.close(sub)
        seen = b""
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the writer is gone and everything was read
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(main)
    assert p.returncode == 0, p.stderr
    assert b"\x1b" not in seen and b"evil \\x1b[2J\\x1b[31mred.jpg" in seen, seen
    piped = subprocess.run(args, capture_output=True, timeout=300)
    assert b"evil \x1b[2J\x1b[31mred.jpg" in piped.stdout, piped.stdout


def test_commands_name_an_output_that_is_not_one(corpus, tmp_path):
    """An -o that mhc did not write is the user's mistake to name. Falling back on the
    defaults papered over it: `pairs` blamed data/images, which the user never mentioned,
    and `cache clear -o TYPO` cleared the default cache instead of the one meant."""
    default = tmp_path / "xdg"
    env = {"XDG_CACHE_HOME": str(default)}
    assert run_cli("-i", str(corpus), "-o", str(tmp_path / "real"), "-a", "phash_8", "-q", env=env).returncode == 0
    before = run_cli("cache", "info", env=env).stdout
    assert " 0 hashes" not in before
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "summary.json").write_text("{not json")
    (tmp_path / "file").write_text("x")
    cases = {"missing": "does not exist", "empty": "has no summary.json", "bad": "unreadable summary.json",
             "file": "is not a folder"}
    a, b = sorted(str(p) for p in corpus.rglob("*.jpg"))[:2]
    for name, why in cases.items():
        o = str(tmp_path / name)
        for args, hint in [(("pairs", "-o", o, "-a", "phash_8", "-t", "4"), "pass -i/--input"),
                           (("cache", "clear", "-o", o), "give --cache FILE"),
                           (("cache", "info", "-o", o), "give --cache FILE"),
                           (("ignore", a, b, "-o", o), "give --cache FILE"),
                           (("report", "-o", o), "pass the folder an mhc run wrote" if name != "bad" else "")]:
            r = run_cli(*args, cwd=tmp_path, env=env)
            msg = " ".join(r.stderr.split())
            assert r.returncode == 2 and why in msg and hint in msg, (args, r.stderr)
            assert "data/images" not in msg and "Traceback" not in r.stderr
    assert run_cli("cache", "info", env=env).stdout == before  # nothing cleared, nothing marked
    # with -i the output folder is only where a cache might be recorded: --cache makes it moot
    r = run_cli("pairs", "-i", str(corpus), "-o", str(tmp_path / "missing"), "--cache", str(tmp_path / "c.sqlite"),
                "-a", "phash_8", "-t", "4", cwd=tmp_path, env=env)
    assert r.returncode == 0 and r.stdout.startswith("path_a,path_b,distance"), r.stderr
    # -o of a real output works for every command
    r = run_cli("cache", "info", "-o", str(tmp_path / "real"), env=env)
    assert r.returncode == 0 and r.stdout == before, r.stderr
    # one of its own folders given: the output is named, not "has no summary.json"
    for args in (("report",), ("cache", "info"), ("pairs", "-a", "phash_8", "-t", "4")):
        r = run_cli(*args, "-o", str(tmp_path / "real" / "phash_8"), env=env)
        assert r.returncode == 2 and r.stderr.strip() == (
            f"Error: {tmp_path / 'real' / 'phash_8'} is a folder inside the mhc output folder {tmp_path / 'real'}; "
            f"pass the output itself: -o {tmp_path / 'real'}"), r.stderr


def test_a_relative_cache_is_recorded_as_the_file_it_named(corpus, tmp_path):
    """`--cache c.sqlite` was recorded as given: `mhc ignore -o OUT` (or the report's
    pasted "not a duplicate?" command) run from another folder named another file there."""
    (tmp_path / "work").mkdir()
    out = tmp_path / "out"
    r = run_cli("-i", str(corpus), "-o", str(out), "--cache", "c.sqlite", "-a", "phash_8", "-t", "2", "-q",
                cwd=tmp_path / "work")
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "summary.json").read_text())["cache"] == str(tmp_path / "work" / "c.sqlite")
    a, b = sorted(str(p) for p in corpus.rglob("*.jpg"))[:2]
    r = run_cli("ignore", a, b, "-o", str(out), cwd=tmp_path)
    assert r.returncode == 0 and f"(in {tmp_path / 'work' / 'c.sqlite'})" in r.stdout, r.stderr
    assert not (tmp_path / "c.sqlite").exists()
    page = next((out / "report" / "phash_8").glob("thr_002*.html")).read_text()
    assert "mhc ignore" in page and f"--cache {tmp_path / 'work' / 'c.sqlite'} " in page


def test_config_prints_toml_that_round_trips(corpus, tmp_path):
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: mhc reads TOML with tomli there
        import tomli as tomllib

    work = tmp_path / "w"
    work.mkdir()
    (work / "mhc.toml").write_text(f'input = "{corpus}"\nalgo = ["dhash_8"]\nframes = 7\n')
    first = run_cli("config", cwd=work)
    assert first.returncode == 0, first.stderr
    doc = tomllib.loads(first.stdout)  # valid TOML
    assert doc["algo"] == ["dhash_8"] and doc["frames"] == 7 and doc["input"] == str(corpus)
    assert "# mhc.toml" in first.stdout or "mhc.toml" in first.stdout
    defaults = tomllib.loads(run_cli("config", cwd=tmp_path).stdout)
    assert defaults["algo"] == ["phash_8", "ahash_8", "dhash_8", "whash_8", "phash_16"]  # the real default list
    assert defaults["max-pixels"] == 178956970 and defaults["cache"].endswith("hashes.sqlite")
    (work / "mhc.toml").write_text(first.stdout)  # print -> mhc.toml -> the same settings
    again = run_cli("config", cwd=work)
    strip = lambda text: [line.split("  #")[0] for line in text.splitlines()]
    assert strip(again.stdout) == strip(first.stdout)


def test_evaluate_never_cuts_the_folder_names(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    for n in ("a1", "a2", "b1"):
        (src / f"{n}.jpg").write_bytes(b"x")
    long = "phash_20/thr_160_unclustered_1234567890"
    d = tmp_path / "out" / long / "001_2"
    d.mkdir(parents=True)
    for n in ("a1", "a2"):
        os.symlink(src / f"{n}.jpg", d / f"{n}.jpg")
    (tmp_path / "out" / long / "unclustered_1").mkdir()
    os.symlink(src / "b1.jpg", tmp_path / "out" / long / "unclustered_1" / "b1.jpg")
    (tmp_path / "labels.json").write_text(json.dumps({"photos/a1.jpg": "A", "photos/a2.jpg": "A", "photos/b1.jpg": "B"}))
    import subprocess
    import sys

    from conftest import ROOT

    r = subprocess.run([sys.executable, str(ROOT / "cluster.py"), "evaluate", str(tmp_path / "out"), "--labels",
                        str(tmp_path / "labels.json")], capture_output=True, text=True, env={**os.environ, "COLUMNS": "60"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.count(long) == 2  # in its row and in the best line, whole


def test_evaluate_with_no_two_files_of_one_group_does_not_name_a_best_folder(tmp_path):
    """Every labelled file its own group: recall counts as 1 with nothing to find, so every
    folder that links none of them scored F1 = 1.000 and one was called the best."""
    src = tmp_path / "photos"
    out = tmp_path / "out" / "phash_8"
    for n in ("a", "b"):
        save(photo(ord(n), (64, 48)), src / f"{n}.jpg")
    for thr, groups in (("thr_000_unclustered_2", {"unclustered_2": "ab"}), ("thr_009_unclustered_0", {"001_2": "ab"})):
        for g, names in groups.items():
            (out / thr / g).mkdir(parents=True)
            for n in names:
                os.symlink(src / f"{n}.jpg", out / thr / g / f"{n}.jpg")
    (tmp_path / "labels.json").write_text(json.dumps({"photos/a.jpg": "A", "photos/b.jpg": "B"}))
    r = run_cli("evaluate", str(tmp_path / "out"), "--labels", str(tmp_path / "labels.json"))
    assert r.returncode == 0, r.stderr
    assert "best F1" not in r.stdout and "no two labelled files in this output share a group" in r.stdout
    assert " 0.000 " in r.stdout  # the folder that links a to b: precision 0


@pytest.mark.parametrize("labels", ["a photo as .csv", "a photo as .json", "empty.csv", "empty folder", "[].json",
                                    "utf-16.csv", "a list as a group", "a NUL in a path"])
def test_evaluate_names_labels_it_cannot_use(tmp_path, labels):
    """Labels that are not text, or hold no label, end in one line naming the file, exit
    2 (a binary CSV was "mhc failed unexpectedly: UnicodeDecodeError", exit 70)."""
    out = tmp_path / "out" / "phash_8" / "thr_000_unclustered_1" / "unclustered_1"
    out.mkdir(parents=True)
    save(photo(1, (64, 48)), tmp_path / "p.jpg")
    os.symlink(tmp_path / "p.jpg", out / "p.jpg")
    path = tmp_path / {"a photo as .csv": "photo.csv", "a photo as .json": "photo.json", "empty.csv": "empty.csv",
                       "empty folder": "groups", "[].json": "list.json", "utf-16.csv": "excel.csv",
                       "a list as a group": "groups.json", "a NUL in a path": "nul.json"}[labels]
    if labels.startswith("a photo"):
        path.write_bytes((tmp_path / "p.jpg").read_bytes())
    elif labels == "utf-16.csv":  # "Unicode text" from a Windows spreadsheet
        path.write_bytes(f"{tmp_path / 'p.jpg'},A\n".encode("utf-16"))
    elif labels == "a list as a group":
        path.write_text(json.dumps({str(tmp_path / "p.jpg"): ["A", "B"]}))
    elif labels == "a NUL in a path":  # JSON's \u0000 (it ended "unexpectedly": ValueError, exit 70)
        path.write_text(json.dumps({str(tmp_path / "p.jpg"): "A", "p\0.jpg": "A"}))
    elif labels == "empty folder":
        path.mkdir()
    else:
        path.write_text({"empty.csv": "path,group\n", "[].json": "{}"}[labels])
    r = run_cli("evaluate", str(tmp_path / "out"), "--labels", str(path))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("Error: --labels " + str(path)), r.stderr
    said = {"a list as a group": 'the group of {p} is ["A", "B"]; give each file one group name or number'.format(
        p=tmp_path / "p.jpg"), "utf-16.csv": "not a text file",
        "a NUL in a path": "the path 'p\\x00.jpg' holds a NUL character, which no file name can"}.get(labels)
    assert (said or ("not a text file" if labels.startswith("a photo") else "holds no labels")) in r.stderr


def test_evaluate_refuses_an_output_folder_as_labels(corpus, tmp_path):
    """`mhc evaluate out --labels out`: every file labelled by the folder it lies in (an
    algorithm's name), an F1 that meant nothing; a threshold folder as labels would make its
    unclustered files one group."""
    out = tmp_path / "out"
    assert run_cli("-q", "-i", str(corpus), "-o", str(out), "-a", "phash_8").returncode == 0
    folder = next((out / "phash_8").iterdir())
    for labels, where in ((out, "an mhc output folder"), (folder, f"inside the mhc output folder {out}"),
                          (out / "summary.json", f"inside the mhc output folder {out}")):
        r = run_cli("evaluate", str(out), "--labels", str(labels))
        assert r.returncode == 2 and r.stderr == (f"Error: --labels {labels} is {where}, not labels: give your own "
                                                  "grouping (CSV path,group, JSON, or a folder of groups)\n"), r.stderr
    # ... and the other way round: the input (or a folder of it) given as the output
    labels = tmp_path / "labels.csv"
    labels.write_text(f"path,group\n{corpus / 'group0' / 'original.jpg'},A\n{corpus / 'group0' / 'small.jpg'},A\n")
    r = run_cli("evaluate", str(corpus), "--labels", str(labels))
    assert r.returncode == 2 and r.stderr == (f"Error: {corpus} holds the labelled files themselves: it is the input, "
                                              "not an output; pass the folder an mhc run wrote (its -o/--output)\n")
    r = run_cli("evaluate", str(corpus / "misc"), "--labels", str(labels))
    assert r.returncode == 2 and r.stderr == (f"Error: {corpus / 'misc'} holds no threshold folders of links; pass an "
                                              "mhc output folder\n"), r.stderr


def test_evaluate_reads_labels_a_spreadsheet_wrote_and_names_that_are_not_utf8(tmp_path):
    """Excel's "CSV UTF-8" starts with a byte-order mark (its header was taken for a file),
    and a name that is not UTF-8 is written in errors.csv as its own bytes: the labels may
    hold it so too (it was "not a text file")."""
    src, out = tmp_path / "photos", tmp_path / "out" / "phash_8" / "thr_004_unclustered_0" / "001_2"
    odd = os.fsdecode(b"caf\xe9.jpg")
    save(photo(1, (64, 48)), src / odd)
    save(photo(1, (64, 48)), src / "cafe.jpg")
    out.mkdir(parents=True)
    for n in (odd, "cafe.jpg"):
        os.symlink(src / n, out / n)
    labels = tmp_path / "labels.csv"
    labels.write_bytes(b"\xef\xbb\xbfpath,group\n" + os.fsencode(f"photos/{odd},A\nphotos/cafe.jpg,A\n"))
    r = run_cli("evaluate", str(tmp_path / "out"), "--labels", str(labels))
    assert r.returncode == 0, r.stderr
    assert "best F1 = 1.0000 at phash_8/thr_004_unclustered_0" in r.stdout, r.stdout


@pytest.mark.parametrize("link", ["symlink", "copy"])
def test_evaluate_scores_the_one_threshold_folder_a_user_opened(corpus, tmp_path, link):
    """The folder the user browsed, given alone: it was "holds no threshold folders"; with
    --link copy its copies map back to their originals through the output it lies in."""
    out = tmp_path / "out"
    assert run_cli("-q", "-i", str(corpus), "-o", str(out), "-a", "phash_8", "--link", link).returncode == 0
    folder = next((out / "phash_8").glob("thr_004_*"))
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({str(corpus / f): f"g{g}" for g in range(4) for f in (
        f"group{g}/original.jpg", f"group{g}/small.jpg", f"edits/g{g} recompressed.jpg", f"edits/g{g}_bright.png")}))
    whole = run_cli("evaluate", str(out), "--labels", str(labels))
    alone = run_cli("evaluate", str(folder), "--labels", str(labels))
    assert whole.returncode == alone.returncode == 0, alone.stderr
    row = next(line for line in whole.stdout.splitlines() if line.endswith(f"phash_8/{folder.name}"))
    assert alone.stdout.splitlines()[2] == row and "best F1 = " in alone.stdout
    if link == "copy":
        assert float(row.split()[0]) > 0  # the copies were known as the labelled files
    cluster = next(folder.glob("001_*"))
    r = run_cli("evaluate", str(cluster), "--labels", str(labels))
    assert r.returncode == 2 and r.stderr.strip() == (
        f"Error: {cluster} is a folder of links, not of clusters; pass the threshold folder it lies in ({folder}) "
        f"or the output folder")


def test_a_tilde_in_a_path_is_the_home_folder(corpus, tmp_path):
    """The shell leaves `--output=~/x`, a quoted "~/x" and mhc.toml's "~/x" as they are; mhc
    made a folder named ~ in the current one (which invites an `rm -rf ~` to clean up)."""
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    shutil.copytree(corpus, home / "Pictures")
    env = {"HOME": str(home)}
    r = run_cli("--input=~/Pictures", "--output=~/clusters", "--cache", "~/c.sqlite", "-a", "phash_8", "-q",
                cwd=work, env=env)
    assert r.returncode == 0, r.stderr
    assert (home / "clusters" / "summary.json").is_file() and (home / "c.sqlite").is_file()
    assert not (work / "~").exists()
    pairs = run_cli("pairs", "-o", "~/clusters", "-a", "phash_8", "-t", "4", cwd=work, env=env)
    assert pairs.returncode == 0 and str(home / "Pictures") in pairs.stdout, pairs.stderr
    (work / "mhc.toml").write_text('input = "~/Pictures"\noutput = "~/from-config"\ncache = "~/c.sqlite"\n')
    r = run_cli("-a", "phash_8", "-q", cwd=work, env=env)
    assert r.returncode == 0, r.stderr
    assert (home / "from-config" / "summary.json").is_file() and not (work / "~").exists()
    # ~user of a user who does not exist: refused (left as it was, it made a folder "~nobodyhere")
    (work / "mhc.toml").unlink()
    for args, name in ((["--output=~nobodyhere/x"], "-o/--output ~nobodyhere/x"),
                       (["--cache", "~nobodyhere/c.sqlite"], "--cache ~nobodyhere/c.sqlite")):
        r = run_cli("-i", str(home / "Pictures"), *args, "-q", cwd=work, env=env)
        assert r.returncode == 2 and r.stderr.startswith(f"Error: {name}: there is no user 'nobodyhere'"), r.stderr
    (work / "mhc.toml").write_text('output = "~nobodyhere/x"\n')
    r = run_cli("-i", str(home / "Pictures"), "-q", cwd=work, env=env)
    assert r.returncode == 2 and "output in" in r.stderr and "no user 'nobodyhere'" in r.stderr, r.stderr
    assert sorted(p.name for p in work.iterdir()) == ["mhc.toml"]


@pytest.mark.parametrize("args, said", [
    (["-i", ""], "-i is empty"),
    (["--input="], "--input is empty"),
    (["-o", ""], "-o is empty"),
    (["--cache", ""], "--cache is empty"),
    (["-a", ""], "-a is empty"),
    (["pairs", "-o", "", "-a", "phash_8", "-t", "3"], "-o is empty"),
    (["report", "--output="], "--output is empty"),
    (["ignore", "a.jpg", ""], "an argument is empty"),
])
def test_an_empty_value_is_refused_not_taken_for_the_current_folder(corpus, tmp_path, args, said):
    """`-i "$DIR"` with DIR unset: "" as a path is the current folder, and mhc clustered
    whatever was there (a home folder, a repository with its .venv)."""
    work = tmp_path / "work"
    shutil.copytree(corpus, work)
    before = sorted(p.relative_to(work) for p in work.rglob("*"))
    r = run_cli(*args, *([] if args[0] in ("pairs", "report", "ignore") else ["-o", str(tmp_path / "out")]),
                cwd=work)
    assert r.returncode == 2 and r.stderr.startswith(f"Error: {said} (an unset shell variable?)"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and sorted(p.relative_to(work) for p in work.rglob("*")) == before


@pytest.mark.parametrize("key", ["input", "output", "cache"])
def test_an_empty_path_in_mhc_toml_is_refused(corpus, tmp_path, key):
    (tmp_path / "mhc.toml").write_text(f'{key} = ""\n')
    before = sorted(p.name for p in tmp_path.iterdir())
    args = ["-q"] + ([] if key == "input" else ["-i", str(corpus)]) + ([] if key == "output" else ["-o", "out"])
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode == 2 and f"{key} in {tmp_path / 'mhc.toml'} (line 1): the path is empty" in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no "out" made


def test_paths_with_brackets_are_printed_as_they_are(corpus, tmp_path):
    """Rich reads [words] as markup: "Photos [/2019]" crashed `cache info`, `cache clear`,
    `report` and `ignore` (MarkupError, exit 70, after `cache clear` had cleared), and
    "[bold]" vanished from a printed path."""
    where = tmp_path / "Photos [/2019] [bold]x"
    out, cache = where / "out", where / "c.sqlite"
    a, b = sorted(str(p) for p in corpus.rglob("*.jpg"))[:2]
    for args, shown in ((["-i", str(corpus), "-o", str(out), "--cache", str(cache), "-a", "phash_8,dhash_8"],
                         f"▶ Open this first: {out}/"),
                        (["cache", "info", "--cache", str(cache)], f"cache {cache}: "),
                        (["report", "-o", str(out)], f"report: {out / 'index.html'}"),
                        (["ignore", a, b, "--cache", str(cache)], f"(in {cache})"),
                        (["cache", "clear", "--cache", str(cache)], f"hashes from {cache}")):
        r = run_cli(*args)
        assert r.returncode == 0 and shown in r.stdout, (args, r.stdout, r.stderr)


def test_cluster_py_without_its_libraries_says_how_to_set_up(tmp_path):
    import shutil
    import subprocess
    import sys

    from conftest import ROOT

    shutil.copy(ROOT / "cluster.py", tmp_path / "cluster.py")
    shutil.copytree(ROOT / "mhc", tmp_path / "mhc")
    r = subprocess.run([sys.executable, "-S", str(tmp_path / "cluster.py"), "--help"], capture_output=True, text=True)
    assert r.returncode == 2 and "make run" in r.stderr and "Traceback" not in r.stderr
    # where the project's .venv exists, another python (the system's) hands over to it
    base = os.path.join(sys.base_prefix, "bin", "python3")
    if sys.prefix == sys.base_prefix or os.path.realpath(sys.prefix) != str(ROOT / ".venv"):
        pytest.skip("the tests do not run in the project's .venv")
    r = subprocess.run([base, "-S", str(ROOT / "cluster.py"), "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("mhc "), r.stderr


def test_ctrl_c_with_no_cache_does_not_claim_a_cache(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT, photo, save

    inp = tmp_path / "in"
    for k in range(60):
        save(photo(k, (1600, 1200)), inp / f"p{k}.jpg")  # (PNGs took 18 s to write)
    for attempt in range(3):  # hashing must still be running when Ctrl-C comes: else try again
        out_dir = tmp_path / f"o{attempt}"
        p = subprocess.Popen([sys.executable, str(ROOT / "cluster.py"), "-i", str(inp), "-o", str(out_dir),
                              "--no-cache", "--exact", "-a", "whash_16"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        staging = tmp_path / f".{out_dir.name}.mhc-staging-{p.pid}"
        while not staging.exists() and p.poll() is None:  # made before hashing starts
            time.sleep(0.01)
        time.sleep(0.3)
        if p.poll() is None:
            break
        p.communicate()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "nothing was saved (--no-cache)" in " ".join(err.split()), err
    assert "kept in the cache" not in err


LONG = "n" * 300  # a name no filesystem here holds: every os.stat of it raises ENAMETOOLONG


@pytest.mark.parametrize("args", [
    ["-o", "{tmp}/" + LONG], ["-o", "{tmp}/" + LONG + "/out"], ["-i", "{tmp}/" + LONG, "-o", "{tmp}/o"],
    ["-o", "{tmp}/o", "--cache", "{tmp}/" + LONG + ".sqlite"], ["pairs", "-o", "{tmp}/" + LONG, "-a", "phash_8", "-t", "3"],
    ["pairs", "-i", "{tmp}/" + LONG, "-a", "phash_8", "-t", "3"], ["report", "-o", "{tmp}/" + LONG],
    ["cache", "info", "--cache", "{tmp}/" + LONG], ["cache", "clear", "-o", "{tmp}/" + LONG],
    ["ignore", "-o", "{tmp}/" + LONG, "a.jpg", "b.jpg"],
])
def test_a_name_too_long_for_any_filesystem_is_one_line(corpus, tmp_path, args):
    r = run_cli(*(a.replace("{tmp}", str(tmp_path)) for a in args), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.splitlines()) == 1 and "at most 255" in r.stderr, r.stderr
    assert not [p for p in tmp_path.iterdir() if p.name != "photos"]  # nothing made


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_a_terminal_that_is_not_utf8_gets_every_line(tmp_path, encoding):
    """A latin-1 or ASCII terminal (an old locale, PYTHONIOENCODING): the summary's "▶" and a
    name like "crème brûlée" ended the run in "mhc failed unexpectedly: UnicodeEncodeError"."""
    inp = tmp_path / "in"
    for k, name in enumerate(["crème brûlée.jpg", "写真.jpg", "b.jpg"]):
        save(photo(1, (160, 120)).resize((160 - 20 * k, 120 - 15 * k)), inp / name)
    (inp / "brûlé.jpg").write_bytes(b"not a picture")  # its error line carries the name
    r = subprocess.run([sys.executable, str(ROOT / "cluster.py"), "-i", str(inp), "-o", str(tmp_path / "out"),
                        "--no-cache", "-a", "phash_8,dhash_8"], capture_output=True,
                       env={**os.environ, "COLUMNS": "120", "PYTHONIOENCODING": encoding})
    stdout, stderr = r.stdout.decode(encoding), r.stderr.decode(encoding)
    assert r.returncode == 0 and "unexpectedly" not in stderr, stderr
    assert "> suggested threshold" in stdout and "> Open this first:" in stdout, stdout
    assert ("br\\xfbl\\xe9.jpg" if encoding == "ascii" else "brûlé.jpg") in stdout, stdout


def test_an_exception_outside_the_commands_handlers_is_one_line(monkeypatch, capsys):
    """The last net in main(): whatever escapes a command's own handling is one line, exit 70."""
    from mhc import cli

    class Broken:
        def main(self, **kw):
            raise RuntimeError("boom")

    monkeypatch.setattr(cli.typer.main, "get_command", lambda app: Broken())
    monkeypatch.delenv("MHC_DEBUG", raising=False)
    assert cli.main(["cache", "info"]) == 70
    err = capsys.readouterr().err
    assert err.startswith("mhc failed unexpectedly: RuntimeError: boom.") and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("where", ["summing up", "after the commit", "before the commit"])
def test_a_bug_says_truly_whether_the_output_was_replaced(corpus, tmp_path, monkeypatch, capsys, where):
    """A bug after the new tree was swapped in (printing the summary, stamping the marker)
    used to end in "... The previous output is unchanged", sending the user looking for a
    run that was in fact written; before the swap that sentence is true, and kept."""
    from mhc import cli, report, terminal, writing

    out = tmp_path / "out"
    args = ["-i", str(corpus), "-o", str(out), "-a", "phash_8", "-j", "1", "--cache", str(tmp_path / "c.sqlite")]
    assert run_cli(*args, "-q").returncode == 0
    before = (out / "summary.json").read_bytes()
    (corpus / "group1" / "small.jpg").unlink()  # the rerun has something to write

    def boom(*a, **k):
        raise RuntimeError("boom")

    target = {"summing up": (terminal, "print_summary"), "after the commit": (writing, "stamp"),
              "before the commit": (report, "write_report")}[where]
    monkeypatch.setattr(*target, boom)
    monkeypatch.delenv("MHC_DEBUG", raising=False)
    capsys.readouterr()
    assert cli.main(args) == 70
    err = " ".join(capsys.readouterr().err.split())
    assert "mhc failed unexpectedly: RuntimeError: boom." in err and "Traceback" not in err, err
    written = str(corpus / "group1" / "small.jpg") not in json.loads((out / "summary.json").read_text())["files"]
    if where == "before the commit":
        assert "The previous output is unchanged." in err and (out / "summary.json").read_bytes() == before
    else:
        assert f"The run's new output is in place and complete: {out}." in err and "unchanged" not in err, err
        assert written


def test_an_output_where_no_folder_can_be_made_says_what_to_do(corpus):
    # /proc holds no folders of ours: mkdir fails with an errno that has no advice of its own
    r = run_cli("-i", str(corpus), "-o", "/proc/mhc-out", "-a", "phash_8", "-q", "--no-cache")
    assert r.returncode == 3, r.stderr
    assert len(r.stderr.splitlines()) == 1 and "choose another --output" in r.stderr, r.stderr


def test_camera_and_browser_names_are_found_and_other_files_are_counted(tmp_path):
    """.jfif/.jpe (JPEGs as Windows and browsers save them) and .mts/.m2ts (camcorders) were
    passed over silently, as was every file that is not media by its name; now they are
    hashed, and the others are counted by extension in one line."""
    from conftest import make_video

    inp = tmp_path / "in"
    save(photo(1), inp / "a.jpg", quality=90)
    for name in ("b.jfif", "c.jpe"):
        save(photo(1), inp / name, quality=80)
    ts = make_video(tmp_path / "clip.ts", [photo(2), photo(3)], seconds=1.0)
    shutil.copy(ts, inp / "clip.mp4")
    shutil.copy(ts, inp / "00001.MTS")
    shutil.copy(ts, inp / "00002.m2ts")
    for name in ("notes.txt", "a.xmp", "IMG_0001.AAE", "photo without extension"):
        (inp / name).write_bytes((inp / "a.jpg").read_bytes() if "without" in name else b"sidecar")
    out = tmp_path / "out"
    r = run_cli("-i", str(inp), "-o", str(out), "-a", "phash_8", "-t", "0:4:1")
    said = " ".join(r.stdout.split())
    assert r.returncode == 0, r.stderr
    assert "6 files found (3 images, 3 videos)" in said, said
    assert ("4 other file(s) skipped, not images or videos by their names: 1 without an extension, 1 .aae, 1 .txt, "
            "1 .xmp") in said, said
    clusters = sorted(sorted(os.readlink(x).rsplit("/", 1)[1] for x in c.iterdir())
                      for c in (out / "phash_8").glob("thr_000_*/0*"))
    assert clusters == [["00001.MTS", "00002.m2ts", "clip.mp4"], ["a.jpg", "b.jfif", "c.jpe"]], clusters
    index = " ".join((out / "index.html").read_text().split())
    assert ("4 other file(s) skipped, not images or videos by their names (1 without an extension, 1 .aae, 1 .txt, "
            "1 .xmp)") in index  # the report says it too, from summary.json (also when rebuilt)
    assert run_cli("report", "-o", str(out)).returncode == 0
    assert "4 other file(s) skipped" in (out / "index.html").read_text()


@pytest.fixture
def nas_folder(tmp_path) -> Path:
    """A photo folder as a NAS or phone leaves it: thumbnails of the photos in @eaDir
    (Synology), a temporary copy, an app's cache."""
    inp = tmp_path / "nas"
    save(photo(11), inp / "a.jpg")
    save(photo(12), inp / "coffee.jpg")
    for copy in ("@eaDir/a.jpg/SYNOPHOTO_THUMB_XL.jpg", "b.tmp.jpg", "phone/cache/c.jpg"):
        (inp / copy).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(inp / "a.jpg", inp / copy)
    return inp


def test_exclude_leaves_out_names_and_paths_and_pairs_follow_the_output(nas_folder, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "c.sqlite"
    common = ["-i", str(nas_folder), "-o", str(out), "--cache", str(cache), "-a", "phash_8"]
    assert run_cli(*common, "-q").returncode == 0  # everything hashed once
    r = run_cli(*common, "--exclude", "@eaDir", "--exclude", "*.tmp.jpg", "--exclude", "phone/cache/*")
    said = " ".join(r.stdout.split())
    assert r.returncode == 0 and "2 files found: 0 decoded, 2 from the cache" in said, said
    assert "3 file(s) and folder(s) left out by --exclude @eaDir *.tmp.jpg phone/cache/*" in said, said
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(Path(f).name for f in summary["files"]) == ["a.jpg", "coffee.jpg"]
    assert summary["counts"]["excluded"] == 3 and summary["options"]["exclude"] == ["@eaDir", "*.tmp.jpg",
                                                                                    "phone/cache/*"]
    assert "3 file(s) and folder(s) left out by --exclude" in (out / "index.html").read_text()
    # mhc pairs -o uses the patterns the output was made with: its pairs are its links
    rows = run_cli("pairs", "-o", str(out), "-a", "phash_8", "-t", "64").stdout.splitlines()
    assert [Path(x).name for x in rows[1].split(",")[:2]] == ["a.jpg", "coffee.jpg"] and len(rows) == 2, rows
    # left out is not gone: their hashes stay in the cache for a run without the patterns
    r = run_cli(*common)
    assert r.returncode == 0 and "5 files found: 0 decoded, 5 from the cache" in " ".join(r.stdout.split())
    # a whole path (from /) and a folder's path under the input, without its files' glob
    r = run_cli(*common, "--exclude", str(nas_folder / "phone"), "--exclude", "@eaDir/", "-q")
    assert r.returncode == 0
    assert len(json.loads((out / "summary.json").read_text())["files"]) == 3


@pytest.mark.parametrize("args, said", [
    (["--exclude", "/"], "--exclude needs a name or path pattern, e.g. @eaDir or 'phone/cache/*', not '/'"),
    (["--exclude", ""], "--exclude is empty"),
    (["--exclude", "*"], "; 5 left out by --exclude *); pass -i/--input FOLDER"),
])
def test_exclude_mistakes_are_one_line(nas_folder, tmp_path, args, said):
    r = run_cli("-i", str(nas_folder), "-o", str(tmp_path / "out"), "-a", "phash_8", *args)
    assert r.returncode == 2 and said in " ".join(r.stderr.split()), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_exclude_in_mhc_toml_takes_one_pattern_or_a_list(nas_folder, tmp_path):
    for value in ('"@eaDir"', '["@eaDir", "phone"]'):
        (tmp_path / "mhc.toml").write_text(f"exclude = {value}\n")
        r = run_cli("-i", str(nas_folder), "-o", str(tmp_path / "out"), "-a", "phash_8", cwd=tmp_path)
        n = 4 if value.startswith('"') else 3
        assert r.returncode == 0 and f"{n} files found" in r.stdout, r.stdout + r.stderr


def test_exclude_says_which_pattern_matched_nothing_and_takes_a_dot_slash(nas_folder, tmp_path):
    """`--exclude ./phone/cache` matched nothing (the path under the input has no ./), and
    nothing said so: a typo in a pattern was silently without effect."""
    r = run_cli("-i", str(nas_folder), "-o", str(tmp_path / "out"), "-a", "phash_8", "--exclude", "./phone/cache",
                "--exclude", "@eaDri")
    assert r.returncode == 0, r.stderr
    assert f"--exclude '@eaDri' matched nothing in {nas_folder}" in " ".join(r.stderr.split()), r.stderr
    assert "'./phone/cache'" not in r.stderr  # it matched
    files = json.loads((tmp_path / "out" / "summary.json").read_text())["files"]
    assert not any("/phone/cache/" in f for f in files) and any("@eaDir" in f for f in files)


def test_cache_commands_refuse_an_output_made_without_a_cache(tmp_path):
    """`mhc cache clear -o OUT` for an output made with --no-cache cleared the default cache,
    which held other runs' hashes."""
    for k in range(3):
        save(photo(k), tmp_path / "in" / f"p{k}.jpg")
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    assert run_cli("-i", str(tmp_path / "in"), "-o", str(tmp_path / "cached"), "-a", "phash_8", "-q",
                   env=env).returncode == 0
    assert run_cli("-i", str(tmp_path / "in"), "-o", str(tmp_path / "o"), "-a", "phash_8", "--no-cache", "-q",
                   env=env).returncode == 0
    before = run_cli("cache", "info", env=env).stdout
    assert "3 files" in before
    for sub in ("clear", "info"):
        r = run_cli("cache", sub, "-o", str(tmp_path / "o"), env=env)
        assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
        assert "was made with --no-cache, so no hash cache belongs to it" in r.stderr
    assert run_cli("cache", "info", env=env).stdout == before  # nothing cleared
    assert "3 files" in run_cli("cache", "info", "-o", str(tmp_path / "cached"), env=env).stdout


def test_report_refuses_a_negative_number_of_workers(tmp_path):
    """`mhc report -j -1` was taken as one process; a run refuses it."""
    r = run_cli("report", "-o", str(tmp_path / "missing"), "-j", "-1")
    assert r.returncode == 2 and r.stderr == "Error: --workers must be 0 (all cores) or more, not -1\n", r.stderr
