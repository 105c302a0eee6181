"""PDQ (pdq_16): bit-exact with Meta's C++ reference, its quality score, dihedral variants."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mhc import Options, UsageError, parse_algorithm, run
from mhc.pdq import luma, pdq_dihedral, pdq_hash, pdq_with_dihedral
from mhc.summary import clusters

from conftest import photo, run_cli, save

DATA = Path(__file__).parent / "data" / "pdq"
# pdq/cpp/reg_test/expected/out of facebook/ThreatExchange (see data/pdq/README.md)
REFERENCE = {
    "bridge-1-original.jpg": "d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22",
    "bridge-2-rotate-90.jpg": "30a10efdf1c83f429013d48d0ffffc52e34e0e35ada952a9d29605215aa9e5af",
}
# the reference's 8 dihedral hashes of bridge-1: original, rot90, rot180, rot270, flipx, flipy, flip+1, flip-1
DIHEDRAL = (
    "d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22",
    "f0a10efd51c83d429053d48d0fffbc52e34e0e17ada956a9d29685211ea9e58f",
    "adad5a64b5a102e55b62a88052dacd5ae63b847fc337b4b766b399361bc93188",
    "a5f0b457248995e8c1065c275aaa56d8b61ba4bdf8fcfc0383c32f8b0bfc4f05",
    "d8f80f31e0f457b00637f5d5038f980fb36ed12a9662c1e233e64c634e9c64dd",
    "8dada49991a1bd1a5362577742da32a5e63b7b80c2364b4866b346c91bc9ce77",
    "f0a1e10271ccc0bd90530b720fff038de34ef1e8ada9a956d6967ade5ea91a50",
    "a5f44ba8a4996a17cd06a1d85aaaa927b61b5b42f8fc03fc83c3d0740bfcb0fa",
)


def bits(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_bit_exact_with_the_reference(name):
    with Image.open(DATA / name) as im:
        h, quality = pdq_hash(im.convert("RGB"))
    assert h.hex() == REFERENCE[name] and quality == 100
    assert parse_algorithm("pdq_16").to_hex(h) == REFERENCE[name]  # the hex users compare elsewhere


def test_the_dihedral_hashes_are_the_references():
    with Image.open(DATA / "bridge-1-original.jpg") as im:
        rgb = im.convert("RGB")
    hashes, quality = pdq_dihedral(rgb)
    assert [h.hex() for h in hashes] == list(DIHEDRAL) and quality == 100
    plain, variants, q = pdq_with_dihedral(rgb)
    assert plain.hex() == REFERENCE["bridge-1-original.jpg"] and variants == hashes and q == 100
    # the rotated file's hash is within Meta's match distance (31) of one of the original's
    # variants (14 bits: the file was re-encoded) and far from the original's own hash
    rot = REFERENCE["bridge-2-rotate-90.jpg"]
    assert min(bits(rot, d) for d in DIHEDRAL) <= 31 < 64 < bits(rot, DIHEDRAL[0])


def test_resize_of_large_images_follows_cimg():
    """Above 512 px the reference samples 512 x 512 pixels by nearest neighbour: luma of a
    synthetic ramp shows which source columns/rows were taken."""
    ramp = np.tile(np.arange(1600, dtype=np.float64) % 256, (3, 1)).astype(np.uint8)
    ramp = np.repeat(ramp[:1], 40, axis=0)  # 40 x 1600: width shrinks, height grows
    y = luma(Image.fromarray(ramp, "L"))
    assert y.shape == (512, 512)
    assert y[0, 1] == (1600 / 512) // 1 % 256 and y[0, 511] == int(511 * 1600 / 512) % 256
    assert (y == y[0]).all()  # rows repeated when the height grows


def test_flat_images_are_never_linked_and_are_counted(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    for k, grey in enumerate((120, 121)):  # two near-identical flat pictures: quality 0
        Image.new("RGB", (800, 600), (grey, 130, 140)).save(inp / f"flat{k}.png")
    a = photo(3, (1200, 900))
    save(a, inp / "photo.jpg", quality=92)
    save(a.resize((600, 450)), inp / "photo small.jpg", quality=70)
    save(photo(4, (900, 900)), inp / "other.png")
    r = run_cli("-i", str(inp), "-o", str(tmp_path / "out"), "-a", "pdq_16", "-t", "0:60:2")
    assert r.returncode == 0, r.stderr
    assert "2 image(s) too flat for pdq_16 to hash reliably" in " ".join(r.stdout.split())
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    entry = summary["algorithms"]["pdq_16"]
    assert [Path(summary["files"][k]).name for k in entry["too_flat"]] == ["flat0.png", "flat1.png"]
    top = entry["thresholds"][-1]
    assert top["clusters"] == 1 and top["clustered_files"] == 2  # the photo and its copy, never the flat pair
    assert "too flat for pdq_16" in (tmp_path / "out" / "index.html").read_text()
    # HDBSCAN and complete linkage measure distances by matrix: the flat pair stays apart there too
    for extra in (["--method", "hdbscan"], ["--linkage", "complete", "-t", "0:60:2"]):
        out = tmp_path / f"out-{extra[1]}"
        r = run_cli("-i", str(inp), "-o", str(out), "-a", "pdq_16", *extra)
        assert r.returncode == 0, r.stderr
        s = json.loads((out / "summary.json").read_text())
        flat = {str(inp / "flat0.png"), str(inp / "flat1.png")}
        t = s["algorithms"]["pdq_16"]["thresholds"][-1]["threshold"]
        assert all(not flat <= set(c) for c in clusters(s, "pdq_16", t)), extra


def test_pdq_in_a_run_links_copies_and_with_isometric_rotations(tmp_path):
    inp = tmp_path / "in"
    a = photo(5, (1400, 1000))
    save(a, inp / "a.jpg", quality=92)
    save(a.resize((700, 500)), inp / "a small.jpg", quality=75)
    save(a.transpose(Image.Transpose.ROTATE_270), inp / "a turned.jpg", quality=92)
    save(photo(6, (1000, 1000)), inp / "b.png")
    common = dict(input=inp, algorithms=["pdq_16"], thresholds="0:31:1", workers=1)
    plain = run(Options(output=tmp_path / "plain", **common))
    iso = run(Options(output=tmp_path / "iso", isometric=True, **common))
    names = lambda res: sorted(sorted(Path(res.files[i]).name for i in c)  # noqa: E731
                               for c in res.algorithms[0].partitions[-1].clusters)
    assert names(plain) == [["a small.jpg", "a.jpg"]]  # 31: Meta's match threshold
    assert names(iso) == [["a small.jpg", "a turned.jpg", "a.jpg"]]


@pytest.mark.parametrize("spec", ["pdq_8", "pdq_32"])
def test_pdq_has_one_size(spec):
    with pytest.raises(UsageError, match="pdq_16"):
        parse_algorithm(spec)
