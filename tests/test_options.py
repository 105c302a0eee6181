"""Options: declared once, checked before any work, the same from Python, the command line
and mhc.toml."""
from __future__ import annotations

import pytest

from mhc import Options, UsageError, validate

from conftest import photo, run_cli, save


@pytest.mark.parametrize("setting, message", [
    ("thresholds = 1.5", 'thresholds in {} (line 1) must be a text such as "0:19:1", "0%:30%:2%" or "2,5,10", a '
                         'whole number, or a list of them, not 1.5'),
    ('duration-tolerance = "0.1"', 'duration-tolerance in {} (line 1) must be a number, not "0.1"'),
    ('max-pixels = "100000"', 'max-pixels in {} (line 1) must be a whole number, not "100000"'),
    ("verify = true", "verify in {} (line 1) must be a text, not true"),
    ("algo = 8", "algo in {} (line 1) must be a list of texts, not 8"),
    ('link = "teleport"', "link in {} (line 1) must be one of 'symlink', 'hardlink', 'copy', not \"teleport\""),
    # a value refused after the type check names the file it came from (not a --workers never typed)
    ("workers = -2", "--workers must be 0 (all cores) or more, not -2 (set in {})"),
    ('thresholds = "0:10:0"', "--thresholds '0:10:0': STEP must be positive (set in {})"),
    ('input = "nowhere"', "pass -i/--input FOLDER with your media (set in {})"),
    ("algorithm = ['phash_8']", "unknown setting 'algorithm' in {} (line 1); did you mean algo? known: algo,"),
    ("worker = 2", "unknown setting 'worker' in {} (line 1); did you mean workers?"),
    # TOML's \u0000: no path can hold it (ValueError "embedded null byte", exit 70)
    ('output = "out\\u0000put"', "--output out\\x00put holds a NUL character, which no path or value can (set in {})"),
    ('cache = "c\\u0000"', "--cache c\\x00 holds a NUL character, which no path or value can (set in {})"),
])
def test_a_wrong_value_in_mhc_toml_is_one_clear_line(tmp_path, setting, message):
    (tmp_path / "mhc.toml").write_text(setting + "\n")
    r = run_cli("-n", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert message.format(tmp_path / "mhc.toml") in " ".join(r.stderr.split()), r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("where, value", [("command line", "2,0:4:2,10"), ("mhc.toml", '[2, "0:4:2", 10]')])
def test_a_list_of_thresholds_makes_exactly_those_folders(tmp_path, where, value):
    save(photo(1, (64, 48)), tmp_path / "in" / "a.jpg")
    (tmp_path / "mhc.toml").write_text('input = "in"\noutput = "out"\nalgo = ["phash_8"]\n' +
                                      (f"thresholds = {value}\n" if where == "mhc.toml" else ""))
    r = run_cli("-q", "--no-cache", *(["-t", value] if where == "command line" else []), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name.partition("_unclustered")[0] for p in (tmp_path / "out" / "phash_8").iterdir()) == [
        "thr_000", "thr_002", "thr_004", "thr_010"]


def test_a_value_from_an_environment_variable_names_it(tmp_path):
    """DASK_SCHEDULER set to something else than an address: the line spoke of a --dask
    never typed."""
    pytest.importorskip("distributed")
    save(photo(1, (64, 48)), tmp_path / "in" / "a.jpg")
    r = run_cli("-n", "-i", str(tmp_path / "in"), "-a", "phash_8", cwd=tmp_path, env={"DASK_SCHEDULER": "scheduler"})
    assert r.returncode == 2 and r.stderr.strip().startswith("Error: --dask 'scheduler' is not a scheduler address")
    assert r.stderr.strip().endswith("(set by DASK_SCHEDULER)"), r.stderr


def test_a_value_given_on_the_command_line_is_not_blamed_on_mhc_toml(tmp_path):
    (tmp_path / "mhc.toml").write_text('algo = ["phash_8"]\n')
    r = run_cli("-n", "-j", "-2", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip() == "Error: --workers must be 0 (all cores) or more, not -2"


def test_one_threshold_in_mhc_toml_may_be_a_number(tmp_path):
    """-t 10 sweeps the one threshold 10, and the refusal of a wrong -t says "or one value
    like 10"; in mhc.toml, thresholds = 10 was refused as "must be a text"."""
    save(photo(1, (64, 48)), tmp_path / "in" / "a.jpg")
    (tmp_path / "mhc.toml").write_text('input = "in"\noutput = "out"\nalgo = ["phash_8"]\nthresholds = 10\n')
    r = run_cli("-q", "--no-cache", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "out" / "phash_8").iterdir()) == ["thr_010_unclustered_1"]


@pytest.mark.parametrize("text, header", [("[mhc]\ninput = 'x'\n", "[mhc] (line 1)"),
                                          ("# mine\n[tool.mhc]\ninput = 'x'\n", "[tool.mhc] (line 2)")])
def test_a_section_in_mhc_toml_is_named_not_called_an_unknown_setting(tmp_path, text, header):
    """As in pyproject.toml, a user writes [mhc] or [tool.mhc]: it was "unknown setting 'mhc'"
    followed by the list of every setting, which did not say what was wrong."""
    (tmp_path / "mhc.toml").write_text(text)
    r = run_cli("-n", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr == (
        f"Error: {tmp_path / 'mhc.toml'} has a section {header}: mhc.toml has none; write the settings at the top "
        f'of the file, e.g. input = "photos"\n'), r.stderr


def test_cache_and_no_cache_together_are_refused_unless_the_command_line_overrides_the_file(tmp_path):
    """`--cache X --no-cache` ran without a cache: X was silently ignored."""
    inp = tmp_path / "in"
    save(photo(1), inp / "a.jpg")
    cache = tmp_path / "c.sqlite"
    r = run_cli("-i", str(inp), "-o", str(tmp_path / "o"), "--cache", str(cache), "--no-cache")
    assert (r.returncode, r.stderr) == (2, f"Error: --cache {cache} and --no-cache contradict each other; give one "
                                           f"of them\n"), r.stderr
    (tmp_path / "mhc.toml").write_text(f'cache = "{cache}"\nno-cache = true\n')
    r = run_cli("-i", str(inp), "-o", str(tmp_path / "o"), cwd=tmp_path)
    assert r.returncode == 2 and f"--no-cache in {tmp_path / 'mhc.toml'} contradict" in r.stderr, r.stderr
    (tmp_path / "mhc.toml").write_text(f'cache = "{cache}"\n')  # the file's cache, not for this one run
    r = run_cli("-i", str(inp), "-o", str(tmp_path / "o"), "--no-cache", "-q", cwd=tmp_path)
    assert r.returncode == 0 and not cache.exists(), r.stderr


def test_a_huge_threshold_range_is_clipped_at_once(tmp_path):
    inp = tmp_path / "in"
    save(photo(1), inp / "a.jpg")
    r = run_cli("-i", str(inp), "-o", str(tmp_path / "o"), "-a", "phash_8", "-t", "0:1000000000:1", "-q",
                timeout=60)
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "o" / "phash_8").iterdir())) == 65  # 0..64 bits
    r = run_cli("-i", str(inp), "-o", str(tmp_path / "o"), "-a", "phash_8", "-t", "0%:100%:0.00001%", timeout=60)
    assert r.returncode == 2 and "use a larger STEP" in r.stderr


def test_wrong_types_from_python_are_refused(tmp_path):
    with pytest.raises(UsageError, match="--frames must be a whole number"):
        validate(Options(input=tmp_path, frames="20"))
    with pytest.raises(UsageError, match="--isometric must be true or false"):
        validate(Options(input=tmp_path, isometric="yes"))
    with pytest.raises(UsageError, match="--algo must be a list of texts"):
        validate(Options(input=tmp_path, algorithms="phash_8"))
