"""The HTML report, as a user sees it in a real headless Chromium, and `mhc pairs`."""
from __future__ import annotations

import csv
import errno
import io
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

import networkx as nx
import pytest
from PIL import ImageEnhance

from mhc import Options, run
from mhc.summary import clusters

from conftest import ROOT, gone_soon, photo, run_cli, save

EVIL = "<img src=x onerror=alert(1)>.jpg"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    root = tmp_path_factory.mktemp("rep")
    inp = root / "in"
    for g in range(3):
        base = photo(40 + g)
        save(base, inp / f"g{g}" / "original.jpg")
        save(base.resize((160, 120)), inp / f"g{g}" / "small.jpg")
        save(ImageEnhance.Brightness(base).enhance(1.1), inp / f"g{g}" / "bright.png")
    save(photo(40).resize((200, 150)), inp / "odd names" / EVIL)  # joins group 0
    for u in range(4):
        save(photo(90 + u), inp / "misc" / f"single {u}.jpg")
    out = root / "out"
    res = run(Options(input=inp, output=out, algorithms=["phash_8", "dhash_8"], workers=2))
    return res, out


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync", "--disable-quic"])
        yield b
        b.close()


def _open(browser, url):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    page.goto(url)
    return page, problems


def test_index_shows_chart_suggestion_and_table(reported, browser):
    res, out = reported
    summary = json.loads((out / "summary.json").read_text())
    page, problems = _open(browser, (out / "index.html").as_uri())
    for key, entry in summary["algorithms"].items():
        sec = page.locator(f'section.algo[id="{key}"]')
        assert sec.locator("svg.chart polyline").count() == 4
        assert sec.locator("svg.chart line.suggested").count() == 1
        rows = sec.locator("table.thresholds tr")
        assert rows.count() == len(entry["thresholds"]) + 1
        sug = entry["suggested"]["threshold"]
        assert sec.locator("tr.suggested td").first.inner_text() == str(sug)
        assert f"Suggested threshold: {sug}." in sec.locator("p.suggestion").inner_text()
        box = sec.locator("svg.chart").bounding_box()
        assert box and box["width"] > 300 and box["height"] > 100  # really drawn
    assert problems == []


def test_threshold_page_shows_the_right_clusters_with_loaded_thumbnails(reported, browser):
    res, out = reported
    summary = json.loads((out / "summary.json").read_text())
    entry = summary["algorithms"]["phash_8"]
    t = next(t for t in entry["thresholds"] if t["threshold"] == 6)
    page, problems = _open(browser, (out / "index.html").as_uri())
    page.locator('section.algo[id="phash_8"] table.thresholds a', has_text=t["folder"]).click()
    page.wait_for_load_state()
    assert page.url.endswith("report/phash_8/thr_006.html")
    sections = page.locator("section.cluster")
    groups = clusters(summary, "phash_8", 6)
    assert sections.count() == t["clusters"] == len(groups)
    for k, members in enumerate(groups):
        sec = sections.nth(k)
        assert sec.locator("figure").count() == len(members)
        shown = {a.get_attribute("title") for a in sec.locator("figure > a").all()}
        assert shown == set(members)
        first = sec.locator("figure").first
        assert "probable original" in first.inner_text() and first.get_attribute("class") == "original"
    # thumbnails really load (lazy images: scroll each into view first)
    imgs = page.locator("section.cluster img")
    assert imgs.count() == t["clustered_files"]
    for img in imgs.all():
        img.scroll_into_view_if_needed()
    page.wait_for_function(
        "[...document.querySelectorAll('section.cluster img')].every(i => i.complete && i.naturalWidth > 0)", timeout=10000)
    # unclustered files are collapsed
    details = page.locator("details.unclustered")
    assert details.count() == 1 and details.get_attribute("open") is None
    assert details.locator("figure").count() == t["unclustered"]
    # navigation
    assert page.locator('a[rel="prev"]').get_attribute("href") == "thr_005.html"
    assert page.locator('a[rel="next"]').get_attribute("href") == "thr_007.html"
    other = page.locator("a.other", has_text="dhash_8")
    assert other.inner_text() == "dhash_8 at 6"  # it says where it goes
    other.click()
    page.wait_for_load_state()
    assert page.url.endswith("report/dhash_8/thr_006.html")
    assert problems == []


def test_hostile_file_name_is_shown_as_text(reported, browser):
    res, out = reported
    page, problems = _open(browser, (out / "report" / "phash_8" / "thr_010.html").as_uri())
    captions = page.locator("figcaption .path", has_text=EVIL)
    assert captions.count() == 1
    assert captions.first.inner_text().endswith(EVIL)
    assert page.locator('img[src="x"]').count() == 0
    page.wait_for_timeout(300)
    assert not any("dialog" in p for p in problems) and problems == []


def test_report_rebuilds_from_summary_without_rehashing(reported, tmp_path):
    res, out = reported
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, symlinks=True)
    (copy / "index.html").unlink()
    shutil.rmtree(copy / "report")
    shutil.rmtree(copy / ".mhc")  # thumbnails too: they are remade
    r = run_cli("report", "-o", str(copy))
    assert r.returncode == 0, r.stderr
    assert (copy / "index.html").read_text() == (out / "index.html").read_text()
    assert sorted(p.name for p in (copy / "report" / "phash_8").iterdir()) == \
        sorted(p.name for p in (out / "report" / "phash_8").iterdir())
    assert len(list((copy / ".mhc" / "thumbs").iterdir())) == len(res.files)
    assert not list(tmp_path.glob(".copy.mhc-staging-*")) and gone_soon(tmp_path, ".copy.mhc-old-*")


def test_no_report_option(corpus, tmp_path):
    run(Options(input=corpus, output=tmp_path / "o", algorithms=["phash_8"], no_report=True, workers=1))
    assert not (tmp_path / "o" / "index.html").exists() and not (tmp_path / "o" / "report").exists()


def test_two_files_say_why_there_is_no_suggestion(tmp_path):
    """A suggestion needs 3 files; with fewer, its absence was silent and looked like a fault."""
    inp = tmp_path / "in"
    save(photo(1), inp / "a.jpg")
    save(photo(1), inp / "b.jpg", quality=60)
    r = run_cli("-i", str(inp), "-o", str(tmp_path / "o"), "-a", "phash_8,dhash_8")
    said = " ".join(r.stdout.split())
    assert r.returncode == 0 and "2 file(s): too few to suggest a threshold (that takes 3 or more)" in said, said
    assert "suggested threshold" not in said and "Open this first" not in said
    index = (tmp_path / "o" / "index.html").read_text()
    assert index.count("too few to suggest a threshold") == 2  # one per algorithm
    save(photo(2), inp / "c.jpg")
    r = run_cli("-i", str(inp), "-o", str(tmp_path / "o"), "-a", "phash_8,dhash_8")
    assert r.returncode == 0 and "too few" not in r.stdout and "suggested threshold" in r.stdout
    assert "too few" not in (tmp_path / "o" / "index.html").read_text()


def test_thumbnails_are_made_once(corpus, tmp_path):
    out = tmp_path / "o"
    run(Options(input=corpus, output=out, algorithms=["phash_8"], thresholds="0:2:1", workers=1))
    thumbs = {p.name: p.stat().st_ino for p in (out / ".mhc" / "thumbs").iterdir()}
    assert thumbs
    run(Options(input=corpus, output=out, algorithms=["phash_8"], thresholds="0:3:1", workers=1))  # tree rebuilt
    again = {p.name: p.stat().st_ino for p in (out / ".mhc" / "thumbs").iterdir()}
    assert again == thumbs  # the same files (hard-linked into the new tree), not remade


def test_a_report_page_or_thumbnail_deleted_by_hand_comes_back_on_a_rerun(corpus, tmp_path):
    """With nothing changed a rerun only rewrote the summary and the index: a page deleted by
    hand stayed missing, and the index linked to it."""
    out, o = tmp_path / "o", dict(algorithms=["phash_8"], thresholds="0:4:1", workers=1)
    run(Options(input=corpus, output=out, **o))
    page = out / "report" / "phash_8" / "thr_002.html"
    text = page.read_bytes()
    thumbs = sorted(p.name for p in (out / ".mhc" / "thumbs").iterdir())
    page.unlink()
    shutil.rmtree(out / ".mhc" / "thumbs")
    run(Options(input=corpus, output=out, **o))
    assert page.read_bytes() == text
    assert sorted(p.name for p in (out / ".mhc" / "thumbs").iterdir()) == thumbs


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_pairs_match_the_clusters_of_the_same_threshold(reported, fmt):
    res, out = reported
    inp = Path(res.input)
    r = run_cli("pairs", "-a", "phash_8", "-t", "6", "-i", str(inp), "-o", str(out), "--format", fmt)
    assert r.returncode == 0, r.stderr
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(r.stdout)))
        pairs = [(x["path_a"], x["path_b"], int(x["distance"])) for x in rows]
    else:
        doc = json.loads(r.stdout)
        # written row by row (not a list built whole): the same text json.dump(rows, indent=1) makes
        assert r.stdout == json.dumps(doc, indent=1, ensure_ascii=True) + "\n"
        pairs = [(x["path_a"], x["path_b"], x["distance"]) for x in doc]
    assert pairs and all(0 <= d <= 6 for _, _, d in pairs)
    assert [d for *_, d in pairs] == sorted(d for *_, d in pairs)
    g = nx.Graph((a, b) for a, b, _ in pairs)
    from_pairs = sorted(sorted(c) for c in nx.connected_components(g))
    summary = json.loads((out / "summary.json").read_text())
    from_folder = sorted(sorted(c) for c in clusters(summary, "phash_8", 6))
    assert from_pairs == from_folder


def test_pairs_json_with_no_pairs_is_an_empty_list(tmp_path):
    save(photo(1), tmp_path / "in" / "a.jpg")
    save(photo(2), tmp_path / "in" / "b.jpg")
    r = run_cli("pairs", "-a", "phash_8", "-t", "0", "-i", str(tmp_path / "in"), "--cache", str(tmp_path / "c.sqlite"),
                "--format", "json")
    assert r.returncode == 0 and r.stdout == "[]\n", (r.stdout, r.stderr)


def test_large_threshold_folders_are_paged(tmp_path):
    """Large collections: no page holds more than PAGE_FILES thumbnails, and of the
    unclustered files only UNCLUSTERED_SHOWN are shown, with a link to their folder."""
    from mhc.report import PAGE_FILES, UNCLUSTERED_SHOWN, build_report

    n = 2 * PAGE_FILES + 500
    files = [f"/photos/{k:05d}.jpg" for k in range(n)]
    # 700 clusters of 2, 1,100 unclustered
    joins = {"i": [2 * k for k in range(700)], "j": [2 * k + 1 for k in range(700)], "d": [1] * 700}
    summary = {"input": "/photos", "files": files, "kinds": ["image"] * n, "counts": {}, "algorithms": {"phash_8": {
        "bits": 64, "hashes": ["0" * 16] * n, "suggested": None, "joins": joins,
        "thresholds": [{"threshold": 3, "folder": "thr_003_unclustered_1100", "clusters": 700,
                        "clustered_files": 1400, "largest": 2, "unclustered": n - 1400}]}}}
    pages = [p for p in build_report(tmp_path, summary, {}) if p.parent.name == "phash_8"]
    assert [p.name for p in pages] == ["thr_003.html", "thr_003-2.html", "thr_003-3.html"]
    counts = [p.read_text().count("<figure") for p in pages]
    assert sum(counts) == 1400 + UNCLUSTERED_SHOWN and max(counts) <= PAGE_FILES
    hidden = n - 1400 - UNCLUSTERED_SHOWN
    assert hidden > 0 and f"and {hidden} more" in pages[-1].read_text()
    assert 'href="../../phash_8/thr_003_unclustered_1100/unclustered_1100/"' in pages[-1].read_text()
    assert all("more, not shown" not in p.read_text() for p in pages[:-1])
    assert all('loading=lazy' in p.read_text() or "no preview" in p.read_text() for p in pages)


def test_index_says_what_to_open_first_and_lists_the_contents(reported, browser):
    res, out = reported
    page, problems = _open(browser, (out / "index.html").as_uri())
    first = page.locator("#open-first")
    assert "Open this first" in first.inner_text()
    rec = res.recommendation
    assert rec is not None and f"{rec.key}/" in first.inner_text()
    first.locator("a").click()
    page.wait_for_load_state()
    assert page.url.endswith(f"report/{rec.key}/thr_{rec.threshold:03d}.html")
    page.go_back()
    toc = page.locator("nav.toc li")
    assert toc.count() == 2 and "suggested" in toc.first.inner_text()
    assert problems == []


def test_details_under_thumbnails_and_the_probable_original(reported, browser):
    res, out = reported
    summary = json.loads((out / "summary.json").read_text())
    page, _ = _open(browser, (out / "report" / "phash_8" / "thr_006.html").as_uri())
    for sec in page.locator("section.cluster").all():
        figs = sec.locator("figure")
        originals = sec.locator("figure.original")
        assert originals.count() == 1 and figs.first.get_attribute("class") == "original"
        for k in range(figs.count()):
            details = figs.nth(k).locator(".details").inner_text()
            assert "×" in details and ("kB" in details or "MB" in details) and ("JPEG" in details or "PNG" in details)
        # the probable original is the largest picture of the cluster
        paths = [a.get_attribute("title") for a in sec.locator("figure > a").all()]
        info = summary["file_info"]
        px = {f: info["width"][i] * info["height"][i] for i, f in enumerate(summary["files"])}
        assert px[paths[0]] == max(px[p] for p in paths)


def test_not_a_duplicate_command_names_the_cache_the_output_uses(tmp_path, browser):
    inp = tmp_path / "in"
    base = photo(77)
    save(base, inp / "a.jpg")
    save(base.resize((160, 120)), inp / "b.jpg")
    cache = tmp_path / "my cache.sqlite"
    out = tmp_path / "elsewhere" / "out"
    run(Options(input=inp, output=out, cache=cache, algorithms=["phash_8"], thresholds="0:4:2", workers=1))
    page, _ = _open(browser, (out / "report" / "phash_8" / "thr_004.html").as_uri())
    page.locator("details.ignore summary").first.click()
    cmd = page.locator("details.ignore code").first.inner_text()
    assert cmd.startswith("mhc ignore --cache ") and shlex.split(cmd)[3] == str(cache)
    a, b = shlex.split(cmd)[4:]
    r = run_cli(*shlex.split(cmd)[1:])  # pasted as shown, it marks the pair in that cache
    assert r.returncode == 0, r.stderr
    from mhc import HashCache

    with HashCache(cache) as c:
        assert [tuple(sorted(x)) for x in c.ignored()] == [tuple(sorted((a, b)))]
    again = run(Options(input=inp, output=out, cache=cache, algorithms=["phash_8"], thresholds="0:4:2", workers=1))
    assert all(len(c) == 1 for p in again.algorithms[0].partitions for c in p.clusters) or not any(
        p.clusters for p in again.algorithms[0].partitions)


def test_not_a_duplicate_command_works_for_a_name_that_is_not_utf8(tmp_path, browser):
    """A name that is not UTF-8 was quoted by shlex and shown with its byte as the text
    "\\xe9": pasted, the command named no file. It is written in bash's $'\\xHH' quoting."""
    import os
    import subprocess

    inp = tmp_path / "in"
    inp.mkdir()
    base = photo(78)
    save(base, inp / "a.jpg")
    odd = os.fsdecode(os.fsencode(str(inp)) + b"/caf\xe9 it's.jpg")
    base.resize((160, 120)).save(odd)
    cache = tmp_path / "c.sqlite"
    out = tmp_path / "out"
    run(Options(input=inp, output=out, cache=cache, algorithms=["phash_8"], thresholds="0:4:2", workers=1))
    page, _ = _open(browser, (out / "report" / "phash_8" / "thr_004.html").as_uri())
    page.locator("details.ignore summary").first.click()
    cmd = page.locator("details.ignore code").first.inner_text()
    assert "$'" in cmd and "\\xe9" in cmd, cmd
    script = f"mhc() {{ {sys.executable} {ROOT / 'cluster.py'} \"$@\"; }}\n{cmd}\n"  # pasted into bash
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert r.returncode == 0 and "marked as not a duplicate" in r.stdout, r.stderr
    from mhc import HashCache

    with HashCache(cache) as c:
        assert sorted(c.ignored()[0]) == sorted([str(inp / "a.jpg"), odd])


def test_a_phone_width_screen_shows_the_whole_chart_and_scrolls_the_table(reported, browser):
    res, out = reported
    page = browser.new_page(viewport={"width": 420, "height": 800})
    page.goto((out / "index.html").as_uri())
    for svg in page.locator("svg.chart").all():
        box = svg.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 420  # the whole chart, no horizontal clipping
        label = svg.locator("text.suggested-label")
        lb = label.bounding_box()
        assert lb["x"] >= box["x"] - 0.5 and lb["x"] + lb["width"] <= box["x"] + box["width"] + 0.5
        assert lb["y"] >= box["y"] - 0.5  # the marker's label is inside the chart
    wrap = page.locator(".table-wrap").first
    assert page.evaluate("w => w.scrollWidth > w.clientWidth", wrap.element_handle())  # the table scrolls...
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 420  # ...not the page


def test_a_page_above_the_suggestion_says_so_and_flags_chains(tmp_path, browser):
    import numpy as np
    from PIL import Image

    inp = tmp_path / "in"
    a, b = np.asarray(photo(41), dtype=np.float32), np.asarray(photo(42), dtype=np.float32)
    for k in range(12):  # a chain: each step close to the next, the ends far apart
        w = k / 11
        save(Image.fromarray((a * (1 - w) + b * w).astype(np.uint8)), inp / f"step {k:02d}.png")
    out = tmp_path / "o"
    res = run(Options(input=inp, output=out, algorithms=["phash_8"], workers=1))
    sug = res.algorithms[0].suggestion.threshold
    top = res.algorithms[0].partitions[-1]
    assert top.threshold > sug and top.largest == 12
    page, problems = _open(browser, (out / "report" / "phash_8" / f"thr_{top.threshold:03d}.html").as_uri())
    assert f"above the suggested one ({sug})" in page.locator("p.above").inner_text()
    assert page.locator("section.cluster.chained").count() == 1
    assert "linked through others" in page.locator("section.cluster.chained h3").inner_text()
    page2, _ = _open(browser, (out / "report" / "phash_8" / f"thr_{sug:03d}.html").as_uri())
    assert page2.locator("p.above").count() == 0
    assert problems == []


def test_no_warning_above_the_suggestion_where_no_two_files_are_alike(tmp_path):
    """Four unrelated pictures: every folder holds only unclustered files, and pages above
    the suggestion warned that "clusters here may join pictures that are not copies"."""
    for k in range(4):
        save(photo(60 + k), tmp_path / "in" / f"p{k}.jpg")
    res = run(Options(input=tmp_path / "in", output=tmp_path / "o", algorithms=["phash_8"], thresholds="0:6:3",
                      workers=1, no_cache=True))
    a = res.algorithms[0]
    assert a.suggestion.threshold == 0 and not a.partitions[-1].clusters
    assert a.suggestion.explanation.startswith("No two files are within 6 bits")
    for t in (3, 6):
        page = (tmp_path / "o" / "report" / "phash_8" / f"thr_{t:03d}.html").read_text()
        assert "unclustered_4" in page and "above the suggested" not in page


def test_a_cold_run_makes_thumbnails_from_the_hashing_decode(tmp_path):
    """One decode per file: hashing writes each image's thumbnail, so the report's
    thumbnail stage has nothing left to make; a warm run into a new output (hashes
    cached, no decode) makes them in that stage instead."""
    from PIL import Image

    inp = tmp_path / "in"
    for i in range(6):
        save(photo(i, (1600, 1200)), inp / f"{i}.jpg", quality=90)
    save(photo(9, (300, 200)).convert("L"), inp / "grey.png")
    o = dict(input=inp, cache=tmp_path / "c.sqlite", algorithms=["phash_8", "dhash_8"], workers=1)
    stages: list[tuple[str, int]] = []
    run(Options(output=tmp_path / "cold", **o), progress=lambda e: stages.append((e.stage, e.total)))
    thumbs = sorted((tmp_path / "cold" / ".mhc" / "thumbs").glob("*.jpg"))
    assert len(thumbs) == 7 and not [s for s in stages if s[0] == "thumbnails"]
    for t in thumbs:
        with Image.open(t) as im:
            assert max(im.size) == 200 and im.mode in ("RGB", "L")
    page = (tmp_path / "cold" / "report").glob("*.html")
    assert all("thumbs/" in p.read_text() for p in page if "thr_" in p.name)
    stages.clear()
    shutil.rmtree(tmp_path / "cold" / ".mhc")  # (else the new output takes them from there: see below)
    run(Options(output=tmp_path / "warm", **o), progress=lambda e: stages.append((e.stage, e.total)))
    assert ("thumbnails", 7) in stages
    assert len(list((tmp_path / "warm" / ".mhc" / "thumbs").glob("*.jpg"))) == 7


def test_a_new_output_takes_its_thumbnails_from_the_other_outputs_of_its_cache(tmp_path, monkeypatch):
    """A warm run into a new output decoded every file again for its thumbnails (~10 ms a
    photo: minutes at 100,000); the cache remembers its outputs, and the thumbnails are
    linked from there. Only files mhc provably made are taken, and each output keeps its
    own (deleting the first leaves the second's whole)."""
    from mhc import thumbs

    inp = tmp_path / "in"
    for i in range(5):
        save(photo(i, (800, 600)), inp / f"{i}.jpg", quality=90)
    o = dict(input=inp, cache=tmp_path / "c.sqlite", algorithms=["phash_8"], workers=1)
    run(Options(output=tmp_path / "first", **o))
    first = {p.name: p.stat().st_ino for p in (tmp_path / "first" / ".mhc" / "thumbs").iterdir()}
    assert len(first) == 5
    # one of them replaced by a file of the same name that mhc did not make: not taken
    fake = sorted(first)[0]
    (tmp_path / "first" / ".mhc" / "thumbs" / fake).unlink()
    save(photo(9, (200, 150)), tmp_path / "first" / ".mhc" / "thumbs" / fake)
    made = []
    real = thumbs.make_thumb
    monkeypatch.setattr(thumbs, "make_thumb", lambda p, d, k="image": made.append(os.path.basename(d)) or real(p, d, k))
    run(Options(output=tmp_path / "second", **o))
    second = {p.name: p.stat().st_ino for p in (tmp_path / "second" / ".mhc" / "thumbs").iterdir()}
    assert made == [fake] and set(second) == set(first)
    assert all(second[n] == first[n] for n in first if n != fake)  # linked, not copied: no room taken
    assert thumbs.is_ours(tmp_path / "second" / ".mhc" / "thumbs" / fake)
    info = run_cli("cache", "info", "--cache", str(tmp_path / "c.sqlite"))  # where they come from, said
    assert f"outputs made with it, most recent first: {tmp_path / 'second'}, {tmp_path / 'first'}\n" in info.stdout
    shutil.rmtree(tmp_path / "first")
    assert all(thumbs.is_ours(p) for p in (tmp_path / "second" / ".mhc" / "thumbs").iterdir())
    made.clear()
    run(Options(output=tmp_path / "third", **o))  # (the first is gone: from the second)
    assert made == [] and len(list((tmp_path / "third" / ".mhc" / "thumbs").iterdir())) == 5
    # `mhc report` of an output whose thumbnails were removed takes them from the others too
    from mhc.report import rebuild_report

    shutil.rmtree(tmp_path / "third" / ".mhc" / "thumbs")
    rebuild_report(tmp_path / "third")
    assert made == [] and len(list((tmp_path / "third" / ".mhc" / "thumbs").iterdir())) == 5
    # an output inside the next run's input (an older run's, among the photos) gives none:
    # a link to its files would change them (their link count and ctime)
    lib = tmp_path / "lib"
    shutil.copytree(inp, lib / "photos")
    run(Options(output=lib / "old", **{**o, "input": lib / "photos"}))
    old = {p: p.stat().st_nlink for p in (lib / "old" / ".mhc" / "thumbs").iterdir()}
    made.clear()
    run(Options(output=tmp_path / "fifth", **{**o, "input": lib}))
    assert set(old.values()) == {1} and all(p.stat().st_nlink == 1 for p in old)
    assert len(made) == 5  # (made: the one output that has them lies in the input)


def test_an_output_that_does_not_answer_is_passed_over_for_thumbnails(tmp_path, monkeypatch):
    """The outputs the cache remembers may lie on a share that stopped answering (a hard
    NFS mount blocks every stat): the run does not wait on one past DONOR_WAIT."""
    import threading
    import time

    from mhc import thumbs

    inp = tmp_path / "in"
    save(photo(1), inp / "a.jpg")
    o = dict(input=inp, cache=tmp_path / "c.sqlite", algorithms=["phash_8"], workers=1)
    for name in ("answers", "hangs"):
        run(Options(output=tmp_path / name, **o))
    release = threading.Event()
    real = os.listdir

    def listdir(path="."):
        if "hangs" in str(path):
            release.wait(60)  # (as a dead mount: no answer)
        return real(path)

    monkeypatch.setattr(thumbs, "DONOR_WAIT", 0.5)
    monkeypatch.setattr(os, "listdir", listdir)
    try:
        t0 = time.monotonic()
        donors = thumbs.thumb_donors(str(tmp_path / "c.sqlite"), tmp_path / "new", str(inp))
        assert time.monotonic() - t0 < 5
        assert [d for d, _ in donors] == [tmp_path / "answers" / thumbs.THUMB_DIR]
    finally:
        release.set()


def test_thumbnails_of_changed_and_deleted_files_are_removed_and_nothing_else(tmp_path):
    """.mhc/thumbs grew with every edit and deletion in the input (a thumbnail is named by
    the file's identity). Those mhc provably made (its name, its mark) and no longer used
    go once the new report is in place; anything else there stays."""
    inp = tmp_path / "in"
    for i in range(4):
        save(photo(i), inp / f"{i}.jpg")
    opts = Options(input=inp, output=tmp_path / "o", cache=tmp_path / "c.sqlite", algorithms=["phash_8"], workers=1)
    run(opts)
    tdir = tmp_path / "o" / ".mhc" / "thumbs"
    first = {t.name for t in tdir.iterdir()}
    assert len(first) == 4
    mine = tdir / "0123456789abcdef0123.jpg"  # named like a thumbnail, but not one mhc made
    save(photo(7, (64, 48)), mine)
    save(photo(8), inp / "1.jpg")  # edited: a new thumbnail
    (inp / "2.jpg").unlink()
    run(opts)
    now = {t.name for t in tdir.iterdir()}
    assert mine.name in now  # (a file of another shape there is refused before a run)
    assert len(now - {mine.name}) == 3 and len(now & first) == 2
    pages = "".join(p.read_text() for p in (tmp_path / "o" / "report" / "phash_8").glob("*.html"))
    assert all(n in pages for n in now - {mine.name})


def test_a_huge_cluster_shows_its_first_files_and_links_to_its_folder(tmp_path, monkeypatch):
    """A cluster larger than CLUSTER_SHOWN (a chain above the suggestion) shows that many
    pictures, then says how many more and links to its folder."""
    import mhc.report as report

    monkeypatch.setattr(report, "PAGE_FILES", 10)
    monkeypatch.setattr(report, "CLUSTER_SHOWN", 25)
    n = 40  # one cluster of 30, 10 unclustered
    files = [f"/photos/{k:05d}.jpg" for k in range(n)]
    joins = {"i": list(range(29)), "j": list(range(1, 30)), "d": [1] * 29}
    summary = {"input": "/photos", "files": files, "kinds": ["image"] * n, "counts": {}, "algorithms": {"phash_8": {
        "bits": 64, "hashes": ["0" * 16] * n, "suggested": None, "joins": joins,
        "thresholds": [{"threshold": 3, "folder": "thr_003_unclustered_10", "clusters": 1,
                        "clustered_files": 30, "largest": 30, "unclustered": 10}]}}}
    pages = [p for p in report.build_report(tmp_path, summary, {}) if p.parent.name == "phash_8"]
    texts = [p.read_text() for p in pages]
    assert sum(t.count("<figure") for t in texts) == 25 + 10
    assert sum("and 5 more, not shown here" in t for t in texts) == 1
    assert any('href="../../phash_8/thr_003_unclustered_10/001_30/"' in t for t in texts)


def test_page_digests_cover_the_code_pages_are_rendered_by():
    """A page is kept on a rerun when its digest is unchanged; the digest includes the source
    of every mhc module the report imports, or a change to how figures are written would
    leave old pages in place."""
    import ast

    import mhc
    from mhc import pagedigest

    here = Path(mhc.__file__).parent
    imported = set()
    for module in ("report.py", "figures.py"):  # module-level imports: what renders (not thumbs or output)
        body = ast.parse((here / module).read_text()).body
        imported |= {f"{n.module}.py" for n in body if isinstance(n, ast.ImportFrom) and n.level == 1 and n.module}
    src = (here / "pagedigest.py").read_text()
    missing = [m for m in sorted(imported) if f'"{m}"' not in src]
    assert not missing, missing
    assert {"figures.py", "chart.py"} <= imported
    assert pagedigest.renderer_digest()


def test_a_thumbnail_is_made_once_per_file_hard_links_and_renames_included(tmp_path, monkeypatch):
    """Every name of a file (hard links: a backup's snapshots) shows the thumbnail made for
    the first, also when that one was made by an earlier run; a renamed folder keeps its
    thumbnails (its hashes come from the cache: its thumbnails were all made again)."""
    import os

    from mhc import thumbs

    a = save(photo(1), tmp_path / "in" / "a.jpg")
    os.link(a, tmp_path / "in" / "b.jpg")
    c = save(photo(2), tmp_path / "in" / "c.jpg")
    made = []
    real = thumbs.make_thumb
    monkeypatch.setattr(thumbs, "make_thumb", lambda p, d, k="image": made.append(p) or real(p, d, k))
    files = [str(a), str(tmp_path / "in" / "b.jpg"), str(c)]
    got = thumbs.ensure_thumbs(files, tmp_path / "out", workers=1)
    assert made == [str(a), str(c)] and got[files[0]] == got[files[1]] != got[files[2]]
    os.link(a, tmp_path / "in" / "d.jpg")  # a later run: the first name's thumbnail is there already
    again = thumbs.ensure_thumbs(files + [str(tmp_path / "in" / "d.jpg")], tmp_path / "out", workers=1)
    assert made == [str(a), str(c)] and again[str(tmp_path / "in" / "d.jpg")] == got[files[0]]
    assert (tmp_path / "out" / got[files[0]]).stat().st_size > 0
    # a renamed folder keeps its thumbnails (named by the file, not its path) ...
    os.rename(tmp_path / "in", tmp_path / "renamed")
    moved = [f.replace(str(tmp_path / "in"), str(tmp_path / "renamed")) for f in files]
    assert thumbs.ensure_thumbs(moved, tmp_path / "out", workers=1)[moved[2]] == got[files[2]]
    # ... and one made before, by path, is still used
    e = save(photo(5), tmp_path / "renamed" / "e.jpg")
    older = thumbs._path_thumb_name(str(e), e.stat())
    shutil.copy(tmp_path / "out" / got[files[2]], tmp_path / "out" / thumbs.THUMB_DIR / older)
    assert thumbs.ensure_thumbs([str(e)], tmp_path / "out", workers=1)[str(e)] == str(thumbs.THUMB_DIR / older)
    tdir = str(tmp_path / "out" / thumbs.THUMB_DIR)  # hashing, which makes them from its own decode, makes none
    assert thumbs.thumb_target(tdir, str(e)) is None and thumbs.thumb_target(tdir, moved[2]) is None
    f = save(photo(6), tmp_path / "renamed" / "f.jpg")
    assert thumbs.thumb_target(tdir, str(f)) == os.path.join(tdir, thumbs.thumb_name(str(f)))
    assert made == [str(a), str(c)]
    # one named with its device number (mhc up to 0.2.0) is used too, by both
    st = f.stat()
    with_device = thumbs._named(f"inode|{st.st_dev}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}".encode(), str(f))
    shutil.copy(tmp_path / "out" / got[files[2]], tmp_path / "out" / thumbs.THUMB_DIR / with_device)
    assert thumbs.thumb_target(tdir, str(f)) is None
    assert thumbs.ensure_thumbs([str(f)], tmp_path / "out", workers=1)[str(f)] == str(thumbs.THUMB_DIR / with_device)
    assert made == [str(a), str(c)]


def test_a_thumbnail_name_does_not_depend_on_the_device_number(tmp_path):
    """A USB disk or a loop device gets another device number when mounted again: with it
    in the names, a rerun with one new file made every thumbnail again."""
    import os

    from mhc import thumbs

    f = save(photo(1), tmp_path / "a.jpg")
    st = f.stat()
    fields = list(st)
    fields[2] = st.st_dev + 17  # st_dev, in os.stat_result's order
    elsewhere = os.stat_result(fields, {"st_mtime_ns": st.st_mtime_ns})
    assert elsewhere.st_dev != st.st_dev and elsewhere.st_ino == st.st_ino
    assert thumbs.thumb_name(str(f), elsewhere) == thumbs.thumb_name(str(f), st)
    fields[1] = st.st_ino + 1  # ... the inode, size and mtime do
    assert thumbs.thumb_name(str(f), os.stat_result(fields, {"st_mtime_ns": st.st_mtime_ns})) != thumbs.thumb_name(
        str(f), st)


def test_on_exfat_each_file_keeps_its_own_thumbnail_across_mounts(exfat_disk, tmp_path):
    """exFAT (a USB drive's) makes its inode numbers up at each mount, in the order files are
    looked up: named by inode, size and mtime, pictures of one size written in one second
    swapped thumbnails after a remount (the report showed one file's picture under another's
    name). There they are named by path."""
    from PIL import Image

    from mhc.identity import inodes_made_up

    photos = exfat_disk.mnt / "photos"
    assert inodes_made_up(str(exfat_disk.mnt)) and not inodes_made_up(str(tmp_path))  # (statfs' f_type)
    colours = [(220, 30, 30), (30, 200, 40), (40, 60, 230), (230, 220, 40)]
    for i, c in enumerate(colours):  # BMPs of one size: one byte size; one second of mtime
        save(Image.new("RGB", (320, 240), c), photos / f"p{i}.bmp")
        os.utime(photos / f"p{i}.bmp", (1_700_000_000, 1_700_000_000))
    o = dict(input=photos, output=tmp_path / "out", cache=tmp_path / "c.sqlite", algorithms=["phash_8"], workers=1)
    run(Options(**o))
    exfat_disk.remount()
    for i in reversed(range(len(colours))):  # looked up in another order: other inode numbers
        os.stat(photos / f"p{i}.bmp")
    save(photo(9), photos / "new.jpg")  # (a change: the report's thumbnails are looked up again)
    run(Options(**o))
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    thumb = dict(zip(summary["files"], summary["file_info"]["thumb"]))
    for i, c in enumerate(colours):
        with Image.open(tmp_path / "out" / ".mhc" / "thumbs" / thumb[str(photos / f"p{i}.bmp")]) as im:
            got = im.convert("RGB").resize((1, 1)).getpixel((0, 0))
        assert max(abs(a - b) for a, b in zip(got, c)) < 30, (i, got, c)


def test_a_disk_mounted_again_under_another_device_keeps_its_thumbnails(loop_disk, tmp_path):
    """The real thing: a filesystem image mounted through one loop device, then another
    (another device number, as a USB disk plugged in after another one), and a file added."""
    mnt = loop_disk.mnt
    for i in range(3):
        save(photo(i), mnt / "photos" / f"p{i}.jpg")
    first_dev = (mnt / "photos" / "p0.jpg").stat().st_dev
    out = tmp_path / "out"
    args = ("-i", str(mnt / "photos"), "-o", str(out), "-a", "phash_8", "--cache", str(tmp_path / "c.sqlite"), "-q")
    assert run_cli(*args).returncode == 0
    tdir = out / ".mhc" / "thumbs"
    before = {p.name: p.stat().st_mtime_ns for p in tdir.iterdir()}
    loop_disk.remount()
    assert (mnt / "photos" / "p0.jpg").stat().st_dev != first_dev
    save(photo(9), mnt / "photos" / "new.jpg")
    assert run_cli(*args).returncode == 0
    after = {p.name: p.stat().st_mtime_ns for p in tdir.iterdir()}
    assert len(after) == len(before) + 1 and all(after.get(n) == t for n, t in before.items())


def test_after_a_restart_the_thumbnails_a_run_may_have_left_damaged_are_checked_and_only_mhcs_broken_ones_go(tmp_path):
    """A run marks the thumbnail folder while its thumbnails may not be on the disk yet. A
    mark of this boot is left alone (the kernel still holds what a killed run wrote); one
    of an earlier boot (the power went) has the damaged thumbnails removed: empty, all zero
    bytes, or mhc's own cut short. A file that is not mhc's stays, whatever its state."""
    from mhc import thumbmarks, thumbs

    tdir = tmp_path / ".mhc" / "thumbs"
    tdir.mkdir(parents=True)
    names = {k: f"{k:020x}.jpg" for k in range(7)}
    for k in (0, 1, 2):
        thumbs.save_thumb(photo(k, (320, 240)), str(tdir / names[k]))
    mark = tdir / ".making"
    assert mark.read_text().strip() == thumbmarks._boot() != ""  # written with the first thumbnail
    whole = (tdir / names[0]).read_bytes()
    (tdir / names[1]).write_bytes(whole[:len(whole) // 2])  # mhc's, cut short
    (tdir / names[2]).write_bytes(b"")  # empty
    (tdir / names[3]).write_bytes(bytes(len(whole)))  # its size, but no data reached the disk
    save(photo(4, (200, 150)), tdir / names[4])  # a JPEG mhc did not make ...
    (tdir / names[4]).write_bytes((tdir / names[4]).read_bytes()[:500])  # ... cut short: not mhc's to remove
    (tdir / "notes.txt").write_bytes(b"")  # not named as a thumbnail
    before = sorted(p.name for p in tdir.iterdir())
    assert thumbmarks.check_left_thumbs(tdir) == 0  # this boot's mark
    assert sorted(p.name for p in tdir.iterdir()) == before
    mark.write_text("an earlier boot\n")
    assert thumbmarks.check_left_thumbs(tdir) == 3
    assert sorted(p.name for p in tdir.iterdir()) == sorted([names[0], names[4], "notes.txt"])
    assert (tdir / names[0]).read_bytes() == whole
    # a mark cut short by the power cut (empty) is one of an earlier boot too
    thumbs.save_thumb(photo(5, (320, 240)), str(tdir / names[5]))
    (tdir / names[5]).write_bytes(b"")
    mark.write_bytes(b"")
    assert thumbmarks.check_left_thumbs(tdir) == 1 and not mark.exists()


def test_the_mark_goes_once_a_run_or_mhc_report_wrote_its_thumbnails_out_and_stays_in_a_run_that_failed(tmp_path,
                                                                                                       monkeypatch):
    from mhc import thumbmarks

    inp, out = tmp_path / "in", tmp_path / "out"
    for k in range(3):
        save(photo(k), inp / f"{k}.jpg")
    o = dict(input=inp, output=out, no_cache=True, algorithms=["phash_8"], workers=1)
    run(Options(**o))
    mark = out / ".mhc" / "thumbs" / ".making"
    assert not mark.exists() and len(list(mark.parent.iterdir())) == 3
    p = save(photo(0), inp / "0.jpg", quality=60)  # changed in place: a new thumbnail, nothing else changes
    os.utime(p, (1, 1))
    run(Options(**o))
    assert not mark.exists() and len(list(mark.parent.iterdir())) == 4
    shutil.rmtree(mark.parent)
    r = run_cli("report", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert not mark.exists() and len(list(mark.parent.iterdir())) == 3
    save(photo(7), inp / "new.jpg")
    from mhc.errors import EnvironmentFault
    from mhc.output import OutputFolder

    def full(self):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(OutputFolder, "commit", full)  # the disk fills up at the end of the run
    with pytest.raises(EnvironmentFault, match="the disk is full"):
        run(Options(**o))
    assert mark.exists() and mark.read_text().strip() == thumbmarks._boot()  # its new thumbnail is not written out
    monkeypatch.undo()
    run(Options(**o))  # (the mark is mhc's: the output is not refused for it)
    assert not mark.exists() and len(list(mark.parent.iterdir())) == 4


def test_a_run_without_a_report_does_not_drop_the_mark_an_earlier_boot_left_unchecked(tmp_path):
    """A run with --no-report makes no thumbnails and did not look at them, but its commit
    wrote the disk out and removed the mark: the damaged thumbnails an earlier boot's run had
    left were then reused by the next report for good."""
    inp, out = tmp_path / "in", tmp_path / "out"
    for k in range(3):
        save(photo(k), inp / f"{k}.jpg")
    o = dict(input=inp, output=out, no_cache=True, algorithms=["phash_8"], workers=1)
    run(Options(**o))
    thumbs = out / ".mhc" / "thumbs"
    damaged = sorted(thumbs.iterdir())[0]
    damaged.write_bytes(b"")  # as a power cut left it, with the mark of that boot
    (thumbs / ".making").write_text("an earlier boot\n")
    save(photo(7), inp / "new.jpg")  # (the tree changes: a commit)
    run(Options(**o, no_report=True))
    assert not damaged.exists() and not (thumbs / ".making").exists()


def test_mhc_report_makes_again_the_thumbnails_an_earlier_boot_left_damaged(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    for k in range(3):
        save(photo(k), inp / f"{k}.jpg")
    run(Options(input=inp, output=out, no_cache=True, algorithms=["phash_8"], workers=1))
    thumbs = out / ".mhc" / "thumbs"
    damaged = sorted(thumbs.iterdir())[0]
    whole = damaged.read_bytes()
    damaged.write_bytes(whole[:300])  # cut short by a power cut, under the mark of that boot
    (thumbs / ".making").write_text("an earlier boot\n")
    r = run_cli("report", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert damaged.read_bytes() == whole and not (thumbs / ".making").exists()
