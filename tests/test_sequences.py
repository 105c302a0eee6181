"""Seeded random sequences of what users do between runs (files added, edited, deleted,
renamed and changed in place; a cluster folder or a link deleted in the output; a file of
their own left in it; other algorithms, thresholds, link kinds and flags), each followed by a
run into the same output. After every run, each of its algorithms' folders holds what a fresh
run into a new folder holds, and every threshold folder holds each input file once.

A longer soak of the same kind (with runs killed by signals part way) found nothing either;
this keeps the oracle in the suite at a few seconds per seed."""
from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance

from mhc import MhcError, Options, run

from conftest import photo, save

ALGOS = ["phash_8", "dhash_8", "ahash_8", "phash_16"]


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()[:16]


def _layout(out: Path, key: str) -> dict[int, tuple[list[tuple[str, ...]], list[str]]]:
    """threshold -> (clusters as sorted contents, unclustered contents), by bytes: the same
    for symlinks, hard links and copies."""
    res = {}
    for thr in sorted((out / key).iterdir()):
        m = re.fullmatch(r"thr_(\d+)_unclustered_(\d+)", thr.name)
        assert m, thr
        clusters, unclustered = [], []
        for c in sorted(thr.iterdir()):
            members = sorted(_sha(f) for f in c.iterdir())
            if c.name.startswith("unclustered"):
                unclustered = members
            else:
                size = re.fullmatch(r"\d+_(\d+)", c.name)
                assert size and int(size[1]) == len(members), c
                clusters.append(tuple(members))
        res[int(m[1])] = (sorted(clusters), unclustered)
    return res


def _change_input(rng: random.Random, inp: Path, step: int) -> None:
    files = sorted(p for p in inp.rglob("*") if p.is_file())
    op = rng.randrange(6)
    p = rng.choice(files)
    if op == 0:
        save(photo(1000 + step, (200, 150)), inp / rng.choice(["new", "a"]) / f"new {step}.jpg")
    elif op == 1:
        im = Image.open(p).convert("RGB")
        save(ImageEnhance.Brightness(im.resize((im.width // 2, im.height // 2))).enhance(1.1),
             p.with_name(f"{p.stem} edit{step}.jpg"), quality=70)
    elif op == 2 and len(files) > 6:
        p.unlink()
    elif op == 3:
        p.rename(p.with_name(f"renamed{step} {p.name}"))
    elif op == 4:  # changed in place: the same path, other content
        im = Image.open(p).convert("RGB")
        save(im.rotate(8), p, format="PNG" if p.suffix == ".png" else "JPEG", quality=60)


def _change_output(rng: random.Random, out: Path) -> Path | None:
    """The user deletes a cluster folder or a link, or leaves a file of their own; returns the
    latter."""
    folders = sorted(c for a in out.iterdir() if a.is_dir() and re.fullmatch(r"[a-z_]+_\d+", a.name)
                     for t in a.iterdir() for c in t.iterdir() if c.is_dir())
    if not folders:
        return None
    c = rng.choice(folders)
    op = rng.randrange(3)
    if op == 0:
        shutil.rmtree(c)
    elif op == 1 and any(c.iterdir()):
        rng.choice(sorted(c.iterdir())).unlink()
    elif op == 2:
        mine = c / "my notes.txt"
        mine.write_text("mine")
        return mine
    return None


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_run_after_any_sequence_of_changes_holds_what_a_fresh_run_holds(tmp_path, seed):
    rng = random.Random(seed)
    inp, out, cache = tmp_path / "in", tmp_path / "out", tmp_path / "c.sqlite"
    for g in range(4):
        base = photo(300 + g, (240, 180))
        save(base, inp / "a" / f"g{g}.jpg", quality=90)
        save(base.resize((160, 120)), inp / "b" / f"g{g} small.jpg")
        if g % 2:
            save(base, inp / "b" / f"g{g}.png")
    for u in range(3):
        save(photo(800 + u, (240, 180)), inp / "c" / f"u{u}.jpg")
    for step in range(8):
        if step:
            _change_input(rng, inp, step)
        mine = _change_output(rng, out) if step and rng.random() < 0.5 else None
        algos = rng.sample(ALGOS, rng.choice([1, 2]))
        opts = dict(algorithms=algos, link=rng.choice(["symlink", "symlink", "hardlink", "copy"]),
                    no_unclustered_links=rng.random() < 0.2, relative_links=rng.random() < 0.2,
                    isometric=rng.random() < 0.2, no_report=rng.random() < 0.5, workers=1)
        if all(a.endswith("_8") for a in algos):
            opts["thresholds"] = rng.choice([None, "0:10:2", "0,3,6"])
        said = f"seed {seed}, step {step}: {opts}"
        try:
            run(Options(input=inp, output=out, cache=cache, **opts), background_cleanup=False)
        except MhcError as e:
            assert mine is not None and "which mhc did not make" in str(e), f"{said}: {e}"
        if mine is not None:  # refused, or its folder kept as it was: never touched
            assert mine.read_text() == "mine", said
            mine.unlink()
            run(Options(input=inp, output=out, cache=cache, **opts), background_cleanup=False)
        fresh = tmp_path / f"fresh{step}"
        run(Options(input=inp, output=fresh, no_cache=True, **opts), background_cleanup=False)
        for key in algos:
            assert _layout(out, key) == _layout(fresh, key), f"{said}: {key} differs from a fresh run"
        shutil.rmtree(fresh)
        everything = sorted(_sha(p) for p in inp.rglob("*") if p.is_file())
        recorded = json.loads((out / "summary.json").read_text())["algorithms"]
        assert set(algos) <= set(recorded), said
        for key, entry in recorded.items():  # this run's algorithms and those kept from earlier runs
            for thr in (out / key).iterdir():
                listed = sorted(_sha(f) for c in thr.iterdir() for f in c.iterdir())
                if entry.get("unclustered_links", True):
                    assert listed == everything, f"{said}: {thr.relative_to(out)} does not hold each file once"
                else:
                    assert set(listed) <= set(everything), f"{said}: {thr.relative_to(out)} holds a file not in it"
