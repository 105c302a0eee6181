"""The Python API as a user meets it: the README's example, run as written."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import mhc
from mhc import Options
from PIL import Image

from conftest import ROOT, photo, save


def test_readme_python_example_runs_as_a_plain_script(tmp_path):
    """The first python block of the README, pasted into a file, run from the repository
    with the venv's python (no __main__ guard: the hashing workers must not re-run it)."""
    block = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)[1]
    script = tmp_path / "example.py"
    script.write_text(block)
    r = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stdout.strip().splitlines()
    pairs = [ln for ln in lines if re.match(r"^\d+ /", ln)]
    clusters = [ln for ln in lines if re.match(r"^\d+ \['", ln)]
    assert len(pairs) == 3 and len(clusters) >= 3  # it prints pairs and clusters of data/images
    sizes = [int(ln.split()[0]) for ln in clusters]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] >= 2


def test_stages_alone_give_what_a_run_gives(tmp_path):
    inp = tmp_path / "in"
    for g in range(3):
        save(photo(g), inp / f"g{g}.jpg")
        save(photo(g).resize((160, 120)), inp / f"g{g} small.jpg")
    save(photo(9), inp / "alone.jpg")
    collection = mhc.hash_folder(inp, ["phash_8"], workers=1)
    assert collection.files == sorted(str(p) for p in inp.iterdir())
    clustering = collection.sweep("phash_8", [0, 4, 8])
    out = mhc.write_tree(tmp_path / "api", collection, [clustering])
    full = mhc.run(Options(input=inp, output=tmp_path / "cli", algorithms=["phash_8"], thresholds="0:8:4", workers=1))
    assert [c.tolist() for c in clustering.partition(8).clusters] == \
        [c.tolist() for c in full.algorithms[0].partition(8).clusters]
    a, b = mhc.read_summary(out), mhc.read_summary(tmp_path / "cli")
    assert a["algorithms"]["phash_8"]["joins"] == b["algorithms"]["phash_8"]["joins"]
    assert sorted(p.name for p in (out / "phash_8").iterdir()) == sorted(p.name for p in (tmp_path / "cli" / "phash_8").iterdir())
    pairs = collection.pairs("phash_8", 8)
    assert {(x.a, x.b) for x in pairs} == {(str(inp / f"g{g} small.jpg"), str(inp / f"g{g}.jpg")) for g in range(3)}


def test_options_are_checked_like_the_command_line(tmp_path):
    import pytest

    with pytest.raises(mhc.UsageError, match="--frames must be 1 to 1000"):
        mhc.hash_folder(tmp_path, ["phash_8"], frames=0)
    with pytest.raises(mhc.UsageError, match="hash_folder"):
        mhc.hash_folder(tmp_path, ["phash_8"], colour=True)
    with pytest.raises(mhc.UsageError, match="--linkage must be"):
        mhc.validate(Options(input=tmp_path, linkage="average"))
    with pytest.raises(mhc.UsageError, match="--workers must be a whole number"):
        mhc.validate(Options(input=tmp_path, workers="2"))


def test_hash_folder_takes_one_algorithm_name_as_a_string(tmp_path):
    """hash_folder(f, "phash_8") read the string as its letters: "algorithm 'p' is not NAME_SIZE"."""
    from conftest import photo, save

    save(photo(1), tmp_path / "a.jpg")
    save(photo(2), tmp_path / "b.jpg")
    assert sorted(mhc.hash_folder(tmp_path, "phash_8", workers=1).algorithms) == ["phash_8"]
    assert sorted(mhc.hash_folder(tmp_path, "phash_8,dhash_8", workers=1).algorithms) == ["dhash_8", "phash_8"]


def test_sweep_checks_its_thresholds_and_takes_the_command_lines_form(tmp_path):
    """collection.sweep(algo, [0, "x"]) failed inside ("'<' not supported between str and int")."""
    import numpy as np
    import pytest

    from conftest import photo, save

    save(photo(1), tmp_path / "a.jpg")
    save(photo(1), tmp_path / "b.jpg", quality=50)
    save(photo(2), tmp_path / "c.jpg")
    c = mhc.hash_folder(tmp_path, "phash_8", workers=1)
    for bad, said in (([0, "x"], "not 'x'"), ([0, 65], "not 65"), ([], "not an empty list"), ([True], "not True")):
        with pytest.raises(mhc.UsageError, match="thresholds for phash_8 are whole numbers of bits from 0 to 64") as e:
            c.sweep("phash_8", bad)
        assert said in str(e.value)
    assert [p.threshold for p in c.sweep("phash_8", "0:10:5").partitions] == [0, 5, 10]
    assert [p.threshold for p in c.sweep("phash_8", [np.int64(4), 2]).partitions] == [2, 4]


def test_pairs_checks_its_threshold_and_takes_the_command_lines_form(tmp_path):
    """collection.pairs(algo, "10") failed inside ("'<=' not supported between int and
    str"), and pairs(algo, 10.5) listed the pairs of 10 as if that were asked."""
    import numpy as np
    import pytest

    save(photo(1), tmp_path / "a.jpg")
    save(photo(1), tmp_path / "b.jpg", quality=50)
    save(photo(2), tmp_path / "c.jpg")
    c = mhc.hash_folder(tmp_path, "phash_8", workers=1)
    for bad in (10.5, True, None):
        with pytest.raises(mhc.UsageError, match=f"the threshold is a whole number of bits .*, not {bad!r}"):
            c.pairs("phash_8", bad)
    assert c.pairs("phash_8", "10%") == c.pairs("phash_8", 6) == c.pairs("phash_8", np.int64(6))
    assert c.pairs("phash_8", " 12 ") == c.pairs("phash_8", 12)
    with pytest.raises(mhc.UsageError, match="is not one threshold"):
        c.pairs("phash_8", "0:10:2")


def test_write_tree_says_what_it_takes(tmp_path):
    """The same clustering twice ended in "cannot write the output (...): File exists", as if
    the disk had refused; a string ended in an AttributeError. One Clustering is taken as is."""
    import pytest

    from conftest import photo, save

    inp = tmp_path / "in"
    save(photo(1), inp / "a.jpg")
    save(photo(1), inp / "b.jpg", quality=50)
    save(photo(2), inp / "c.jpg")
    c = mhc.hash_folder(inp, "phash_8", workers=1)
    cl = c.sweep("phash_8", "0:4:2")
    with pytest.raises(mhc.UsageError, match="two clusterings have the folder phash_8; pass each once"):
        mhc.write_tree(tmp_path / "twice", c, [cl, cl])
    for wrong in ("phash_8", [cl, 3]):
        with pytest.raises(mhc.UsageError, match=r"write_tree takes a list of Clusterings"):
            mhc.write_tree(tmp_path / "wrong", c, wrong)
    assert not (tmp_path / "twice").exists() and not (tmp_path / "wrong").exists()
    out = mhc.write_tree(tmp_path / "one", c, cl)
    assert (out / "phash_8").is_dir() and (out / "summary.json").is_file()


def test_a_threshold_whose_pairs_would_not_fit_in_memory_is_refused_before_listing(monkeypatch):
    """`mhc pairs -t 24` on 100,000 files (~250 million pairs) ended in "mhc failed
    unexpectedly: MemoryError" (exit 70), or in the kernel's OOM killer. The count is now
    estimated from a sample of files first, against the memory there is."""
    import numpy as np
    import pytest

    import mhc.memory
    from mhc.collection import AlgorithmCodes, _check_room_for_pairs

    codes = np.random.default_rng(5).integers(0, 2**63, size=(5000, 1), dtype=np.int64).astype(np.uint64)
    c = AlgorithmCodes(mhc.parse_algorithm("phash_8"), codes, {})
    monkeypatch.setattr(mhc.memory, "available_memory", lambda: 50 * 2**20)
    with pytest.raises(mhc.UsageError, match=r"about [\d,]+ pairs of files lie within 24 bits for phash_8") as e:
        _check_room_for_pairs(c, 24)  # P(d <= 24 of 64) ~ 0.03: ~400,000 pairs, ~95 MiB to list
    assert "far past where copies lie; choose a lower threshold" in str(e.value)
    estimate = int(str(e.value).split()[1].replace(",", ""))
    true = sum(int((np.bitwise_count(codes[k + 1:, 0] ^ codes[k, 0]) <= 24).sum()) for k in range(len(codes)))
    assert 0.7 * true < estimate < 1.3 * true  # a sample of 256 files, within 30 % of the count
    _check_room_for_pairs(c, 12)  # a few pairs: listed


def test_parse_algorithms_names_a_value_that_is_not_text():
    import pytest

    for wrong in ([8], [None], ["phash_8", 16]):
        with pytest.raises(mhc.UsageError, match=r"is not NAME_SIZE text; write for example 'phash_16'"):
            mhc.parse_algorithms(wrong)


def test_pdq_is_named_without_its_size_too():
    """PDQ has one size: "pdq" alone was refused as "not NAME_SIZE", though listed among the
    names that message gives."""
    assert mhc.parse_algorithms(["pdq", "PDQ", "pdq_16"]) == [mhc.parse_algorithm("pdq_16")]


def test_discover_refuses_a_root_that_is_not_a_folder(tmp_path):
    import pytest

    (tmp_path / "a.txt").write_text("x")
    # an empty result would read as "a folder without media": a typo must not look like that
    with pytest.raises(mhc.UsageError, match=r"discover: .*nowhere does not exist; pass the folder of your media"):
        mhc.discover(tmp_path / "nowhere")
    with pytest.raises(mhc.UsageError, match=r"a\.txt is not a folder"):
        mhc.discover(tmp_path / "a.txt")
    assert mhc.discover(tmp_path).files == []  # a folder without media is an empty result


def test_codes_of_different_algorithms_are_not_compared():
    import numpy as np
    import pytest

    from mhc.pairs import pack

    p8, p16 = pack([bytes(8), bytes(8)]), pack([bytes(32)])
    # numpy alone would broadcast the one 64-bit word against four and answer 0
    with pytest.raises(mhc.UsageError, match=r"uint64 \(1,\) and uint64 \(4,\): compare the codes of one algorithm"):
        mhc.hamming(p8[0], p16[0])
    with pytest.raises(mhc.UsageError, match=r"got str and str"):
        mhc.hamming("ab", "cd")
    with pytest.raises(mhc.UsageError, match=r"hashes of different lengths \(the first is 8 bytes\)"):
        pack([bytes(8), bytes(32)])
    assert mhc.hamming(p8[0], pack([b"\xff" * 8])[0]) == 64
    assert list(mhc.hamming(p8, p8[:1])) == [0, 0]  # leading axes still broadcast
    assert np.array_equal(mhc.hamming(p16, p16), [0])


def test_the_date_taken_is_a_real_date_or_none(tmp_path):
    """EXIF DateTimeOriginal becomes ISO 8601; a placeholder ("0000:00:00 ...") or a value
    that is no date (month 13, hour 99) is None, so the report shows the mtime instead and
    the probable original is not chosen by it (it used to show "2021-13-45 99:99 (taken)")."""
    dates = {"valid": "2019:06:01 12:30:05", "dashes": "2019-06-01 12:30:05", "zero": "0000:00:00 00:00:00",
             "month13": "2021:13:45 99:99:99", "blank": "    :  :     :  :  "}
    for name, value in dates.items():
        ex = Image.Exif()
        ex.get_ifd(0x8769)[0x9003] = value
        photo(7, (64, 48)).save(tmp_path / f"{name}.jpg", exif=ex)
    ex = Image.Exif()
    ex[0x0132] = "2018:01:02 03:04:05"  # DateTime only
    photo(7, (64, 48)).save(tmp_path / "datetime only.jpg", exif=ex)
    c = mhc.hash_folder(tmp_path, ["phash_8"], workers=1, no_cache=True)
    taken = {Path(f).stem: c.facts(i)["taken"] for i, f in enumerate(c.files)}
    assert taken == {"valid": "2019-06-01T12:30:05", "dashes": "2019-06-01T12:30:05", "zero": None,
                     "month13": None, "blank": None, "datetime only": "2018-01-02T03:04:05"}


def test_options_take_thresholds_as_numbers_as_mhc_toml_does(tmp_path):
    """`thresholds = [2, 5, 10]` worked in mhc.toml, and `sweep(key, range(0, 20))` in Python,
    but Options(thresholds=[2, 5]) was refused ("must be a text"). Numbers, lists and ranges
    now mean what -t means with them joined by commas."""
    for k in range(3):
        save(photo(k), tmp_path / "in" / f"p{k}.jpg")
    o = dict(input=tmp_path / "in", algorithms=["phash_8"], no_cache=True, dry_run=True)
    for given, text in (([2, 5], "2,5"), (range(0, 9, 4), "0,4,8"), (6, "6"), ((0, "4:8:2"), "0,4:8:2")):
        got = [p.threshold for p in mhc.run(Options(**o, thresholds=given)).algorithms[0].partitions]
        assert got == [p.threshold for p in mhc.run(Options(**o, thresholds=text)).algorithms[0].partitions], given
    for wrong in ([], [1.5], True, {1: 2}):
        try:
            mhc.run(Options(**o, thresholds=wrong))
        except mhc.UsageError as e:  # (it said "must be a text", as if a list could not be given)
            assert str(e).startswith('--thresholds must be a text such as "0:19:1", "0%:30%:2%" or "2,5,10", a whole '
                                     'number, or a list of them, not '), e
        else:
            raise AssertionError(f"{wrong!r} was taken")
