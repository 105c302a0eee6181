"""The HTML report, as a user sees it in a real headless Chromium, and `mhc pairs`."""
from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import networkx as nx
import pytest
from PIL import ImageEnhance

from mhc import Options, run
from mhc.summary import clusters

from conftest import gone_soon, photo, run_cli, save

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
        assert "first file" in sec.locator("figure").first.inner_text()
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
    page.locator("a.other", has_text="dhash_8").click()
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


def test_thumbnails_are_made_once(corpus, tmp_path):
    out = tmp_path / "o"
    run(Options(input=corpus, output=out, algorithms=["phash_8"], thresholds="0:2:1", workers=1))
    thumbs = {p.name: p.stat().st_ino for p in (out / ".mhc" / "thumbs").iterdir()}
    assert thumbs
    run(Options(input=corpus, output=out, algorithms=["phash_8"], thresholds="0:3:1", workers=1))  # tree rebuilt
    again = {p.name: p.stat().st_ino for p in (out / ".mhc" / "thumbs").iterdir()}
    assert again == thumbs  # the same files (hard-linked into the new tree), not remade


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
        pairs = [(x["path_a"], x["path_b"], x["distance"]) for x in json.loads(r.stdout)]
    assert pairs and all(0 <= d <= 6 for _, _, d in pairs)
    assert [d for *_, d in pairs] == sorted(d for *_, d in pairs)
    g = nx.Graph((a, b) for a, b, _ in pairs)
    from_pairs = sorted(sorted(c) for c in nx.connected_components(g))
    summary = json.loads((out / "summary.json").read_text())
    from_folder = sorted(sorted(c) for c in clusters(summary, "phash_8", 6))
    assert from_pairs == from_folder


def test_large_threshold_folders_are_paged(tmp_path):
    """10,000-file collections: no page holds more than PAGE_FILES thumbnails."""
    from mhc.report import PAGE_FILES, build_report

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
    counts = [p.read_text().count("<figure>") for p in pages]
    assert sum(counts) == n and max(counts) <= PAGE_FILES
    assert all('loading=lazy' in p.read_text() or "no preview" in p.read_text() for p in pages)
