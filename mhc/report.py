"""The HTML report: pick a threshold by looking, not by opening 400 folders.

Static pages that work offline from ``file://`` (no CDN, no server, no script needed),
rendered from Jinja2 templates (``mhc/templates``) with autoescaping:

    <out>/index.html                    "open this first", contents, per algorithm a chart,
                                        the suggestion and the table of thresholds
    <out>/report/<algo>/thr_NNN.html    contact sheets, largest cluster first (paged)

Under each picture: pixels, file size, format and date; the probable original of each
cluster (largest, then least compressed, then oldest) is marked, distances are to it, and
clusters whose files are farther apart than the threshold (linked through others) are
flagged. Pages hold at most PAGE_FILES thumbnails, loaded lazily; of the unclustered files
of a threshold the first UNCLUSTERED_SHOWN are shown and the page links to the folder with
all of them.
"""
from __future__ import annotations

import functools
import logging
import os
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import jinja2
import numpy as np
from markupsafe import Markup

from .chart import chart_svg
from .figures import Figures, shown
from .pairs import hex_distance
from .summary import partitions

log = logging.getLogger(__name__)

PAGE_FILES = 1000
# Unclustered files shown per threshold: every file unclustered at every threshold made the
# report of 100,000 files 2,000 pages (880 MB) that nobody browses; the folder holds them all.
UNCLUSTERED_SHOWN = PAGE_FILES
# Members shown per cluster: a cluster of 97,000 files (above the suggestion, where clusters
# chain) is not reviewed picture by picture, and rendering it took most of a rerun; its
# folder holds all of them.
CLUSTER_SHOWN = 5 * PAGE_FILES
DIAMETER_SAMPLE = 300  # members of a cluster whose pairwise distances are all measured
Measure = Callable[[str, np.ndarray, int], tuple[list[int], int]]
"""``measure(key, members, original)``: each member's distance to the original, and the
largest distance between two members (the cluster's diameter)."""


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("mhc", "templates"), autoescape=True, finalize=shown,
                              trim_blocks=True, lstrip_blocks=True)


def page_name(threshold: int, width: int, page: int = 1) -> str:
    return f"thr_{threshold:0{width}d}" + (f"-{page}" if page > 1 else "") + ".html"


def _widths(algos: dict[str, dict]) -> dict[str, int]:
    return {k: max(3, len(str(max(t["threshold"] for t in e["thresholds"])))) for k, e in algos.items()}


def _unit(entry: dict) -> str:
    return "%" if entry.get("unit") == "%" else ""


# -- the index ---------------------------------------------------------------------------------
def render_index(summary: dict) -> str:
    """``index.html``: "open this first", contents, and per algorithm a chart, the suggestion
    and the table of thresholds."""
    # here, not at the top: they shape only the index, which every run writes whole (the
    # threshold pages' digests cover the modules report.py imports at the top)
    from .discover import most_skipped
    from .suggest import MIN_FILES

    files = summary["files"]
    algos = summary["algorithms"]
    widths = _widths(algos)
    rows = []
    for key, e in algos.items():
        sug = (e.get("suggested") or {}).get("threshold")
        href = lambda t: f"report/{urllib.parse.quote(key)}/{page_name(t, widths[key])}"  # noqa: E731
        rows.append({
            "key": key, "unit": _unit(e), "carried": not e.get("computed_now", True),
            "bits_text": "% of each --require threshold" if e.get("unit") == "%" else f"{e.get('bits', '?')} bits",
            "chart": chart_svg(key, e, len(files)), "suggested": sug,
            "suggested_href": href(sug) if sug is not None else None,
            "explanation": (e.get("suggested") or {}).get("explanation"),
            "too_flat": [os.path.basename(files[k]) for k in e.get("too_flat") or []],
            "rows": [dict(t, href=href(t["threshold"]), suggested=t["threshold"] == sug) for t in e["thresholds"]],
        })
    rec = summary.get("recommended")
    open_first = None
    if rec and rec.get("key") in algos and len(algos) > 1:
        e = algos[rec["key"]]
        t = next(t for t in e["thresholds"] if t["threshold"] == rec["threshold"])
        open_first = {"key": rec["key"], "folder": t["folder"], "explanation": rec["explanation"],
                      "href": f"report/{urllib.parse.quote(rec['key'])}/{page_name(rec['threshold'], widths[rec['key']])}"}
    c = summary.get("counts", {})
    counts = {"found": c.get("found", len(files)), "decoded": c.get("decoded", 0), "from_cache": c.get("from_cache", 0),
              "failed": c.get("failed", 0), "excluded": c.get("excluded", 0),
              "aliases": c.get("aliases", 0), "hard_links": c.get("hard_links", 0)}
    skipped = c.get("skipped") if isinstance(c.get("skipped"), dict) else {}
    skipped = {ext: n for ext, n in skipped.items() if isinstance(n, int)}  # (an edited summary.json)
    counts["skipped"] = sum(skipped.values())
    shown, rest = most_skipped(skipped)
    counts["skipped_by"] = shown + (", …" if rest else "")
    return environment().get_template("index.html.j2").render(
        title="mhc report", algos=rows, open_first=open_first, input=summary.get("input", ""), counts=counts,
        computed_now=summary.get("computed_now", list(algos)), carried=summary.get("carried_over", []),
        too_few=len(files) if 0 < len(files) < MIN_FILES else None, min_files=MIN_FILES)


# -- threshold pages -------------------------------------------------------------------------------
def paginate(sizes: list[int], unclustered: int, per_page: int | None = None) -> list[tuple[list, tuple[int, int]]]:
    """Pages of at most ``per_page`` thumbnails: clusters in order, whole where they fit (a
    cluster larger than a page is split into parts), then the unclustered files fill up.
    Returns per page: [(cluster index, start, end), ...] and the unclustered range."""
    per_page = per_page or PAGE_FILES
    pages: list[tuple[list, tuple[int, int]]] = []
    blocks: list = []
    count = 0
    for ci, size in enumerate(sizes):
        if count and count + size > per_page:
            pages.append((blocks, (0, 0)))
            blocks, count = [], 0
        for start in range(0, size, per_page):
            if count >= per_page:
                pages.append((blocks, (0, 0)))
                blocks, count = [], 0
            end = min(size, start + per_page)
            blocks.append((ci, start, end))
            count += end - start
    u = 0
    while True:
        take = min(unclustered - u, per_page - count)
        pages.append((blocks, (u, u + take)))
        u += take
        blocks, count = [], 0
        if u >= unclustered:
            return pages


def hex_measure(summary: dict) -> Measure:
    """Distances from the hashes in summary.json (plain Hamming: a rebuilt report)."""
    def measure(key: str, members: np.ndarray, original: int) -> tuple[list[int], int]:
        hx = summary["algorithms"][key]["hashes"]
        d = [hex_distance(hx[original], hx[i]) for i in members.tolist()]
        sample = members[:DIAMETER_SAMPLE].tolist()
        diameter = max((hex_distance(hx[a], hx[b]) for k, a in enumerate(sample) for b in sample[k + 1:]), default=0)
        return d, diameter
    return measure


Reuse = Callable[[str, str, str], bool]
"""``reuse(key, page name, digest)``: True if the previous output's page of that name had
that digest and is kept (moved into the new tree) instead of being rendered."""


def _threshold_pages(adir: Path, key: str, e: dict, k: int, parts, figs: Figures, algos: dict, widths: dict,
                     measure: Measure | None, reuse: Reuse | None = None) -> list[Path]:
    from .pagedigest import page_digest

    width = widths[key]
    ths = e["thresholds"]
    t, p = ths[k], parts[k]
    unit = _unit(e)
    sug = (e.get("suggested") or {}).get("threshold")
    measure = measure or hex_measure({"algorithms": algos})
    cwidth = max(3, len(str(len(p.clusters))))
    clusters = []
    for rank, c in enumerate(p.clusters, 1):
        original = int(min(c.tolist(), key=lambda i: figs.rank[i]))
        clusters.append({"rank": rank, "name": f"{rank:0{cwidth}d}_{len(c)}", "original": original,
                         "order": [original] + [int(i) for i in c if i != original]})
    unclustered = p.unclustered[:UNCLUSTERED_SHOWN].tolist()
    for c in clusters:
        c["hidden"] = max(0, len(c["order"]) - CLUSTER_SHOWN)
        c["order"] = c["order"][:CLUSTER_SHOWN]
    pages = paginate([len(c["order"]) for c in clusters], len(unclustered))
    unclustered_name = f"unclustered_{len(p.unclustered)}"
    frac = t["threshold"] / (e.get("bits") or 1)
    others = []
    if e.get("unit") != "%":
        for ok, oe in algos.items():
            if ok == key or oe.get("unit") == "%" or oe.get("method", "sweep") != "sweep":
                continue
            v = min((x["threshold"] for x in oe["thresholds"]), key=lambda v: abs(v / (oe.get("bits") or 1) - frac))
            others.append({"key": ok, "threshold": v, "unit": "", "href": f"../{urllib.parse.quote(ok)}/"
                           f"{page_name(v, widths[ok])}"})
    written = []
    digests = e.setdefault("pages", {})
    for pno, (blocks, (u0, u1)) in enumerate(pages, 1):
        hidden = len(p.unclustered) - len(unclustered) if u1 == len(unclustered) and u1 > u0 else 0
        # Only the first page holds the threshold's counts (a new file changes them) and only
        # the page of the unclustered files their folder's name: the other pages stay the same.
        context = dict(
            title=f"{key} threshold {t['threshold']}", key=key, threshold=t["threshold"], unit=unit, page=pno,
            counts={c: t[c] for c in ("clusters", "clustered_files", "largest", "unclustered")} if pno == 1 else None,
            folder=t["folder"] if pno == 1 or u1 > u0 else None,
            folder_of_clusters=t["folder"] if t.get("written", True) and any(
                clusters[ci]["hidden"] and end == len(clusters[ci]["order"]) for ci, _, end in blocks) else None,
            unclustered_name=unclustered_name if u1 > u0 else None, unclustered_hidden=hidden,
            unclustered_linked=e.get("unclustered_links", True) and t.get("written", True),
            unclustered_href=(f"../../{urllib.parse.quote(key)}/{urllib.parse.quote(t['folder'])}/{unclustered_name}/"
                              if u1 > u0 else None),
            suggested=sug, suggested_href=page_name(sug, width) if sug is not None else None,
            # (a page without clusters has nothing to warn about: every file there is unclustered)
            above=sug is not None and t["threshold"] > sug and e.get("unit") != "%" and t["clusters"] > 0,
            prev={"threshold": ths[k - 1]["threshold"], "href": page_name(ths[k - 1]["threshold"], width)} if k else None,
            next=({"threshold": ths[k + 1]["threshold"], "href": page_name(ths[k + 1]["threshold"], width)}
                  if k + 1 < len(ths) else None),
            others=others, first_href=page_name(t["threshold"], width),
            pages=[{"number": q, "current": q == pno, "href": page_name(t["threshold"], width, q)}
                   for q in range(1, len(pages) + 1)],
            blocks=[(clusters[ci]["name"], start, end, clusters[ci]["hidden"]) for ci, start, end in blocks],
            figs=figs.page_facts())
        name = page_name(t["threshold"], width, pno)
        digests[name] = page_digest(context, [clusters[ci]["order"][a:b] for ci, a, b in blocks],
                                    unclustered[u0:u1], figs.digests, e.get("hashes") or [], e.get("settings") or {})
        if reuse is not None and reuse(key, name, digests[name]):
            continue
        page_clusters = []
        for ci, start, end in blocks:
            c = clusters[ci]
            if "dist" not in c:  # measured only for the pages rendered
                c["dist"], c["diameter"] = measure(key, np.asarray(c["order"]), c["original"])
                c["chained"] = e.get("method", "sweep") == "sweep" and c["diameter"] > t["threshold"]
            # one Markup per cluster: the template prints it once (a loop over figures
            # costs an escape call per figure)
            members = Markup("".join([figs.figure(i, "../../", original=c["original"], distance=d)
                                      for i, d in zip(c["order"][start:end], c["dist"][start:end])]))
            part = f" (part {start // PAGE_FILES + 1})" if len(c["order"]) > PAGE_FILES else ""
            more = c["hidden"] if end == len(c["order"]) else 0
            page_clusters.append({**c, "name": c["name"] + part, "members": members, "count": end - start,
                                  "more": more, "href": f"../../{urllib.parse.quote(key)}/"
                                  f"{urllib.parse.quote(t['folder'])}/{urllib.parse.quote(c['name'])}/"})
        unc = Markup("".join([figs.figure(i, "../../") for i in unclustered[u0:u1]]))
        html = environment().get_template("threshold.html.j2").render(
            **{k_: v for k_, v in context.items() if k_ not in ("blocks", "figs")}, clusters=page_clusters,
            unclustered=unc, unclustered_count=u1 - u0)
        path = adir / name
        path.write_text(html, encoding="utf-8")
        written.append(path)
    return written


def build_report(out: Path, summary: dict, thumbs: dict[str, str], measure: Measure | None = None,
                 reuse: Reuse | None = None) -> list[Path]:
    """Write ``index.html`` and ``report/`` under ``out`` from a summary (as in summary.json).
    ``thumbs``: file path -> thumbnail path relative to ``out``; ``measure``: distances as the
    run measured them (default: from the hashes); ``reuse``: keeps a previous page instead
    of rendering it (see :data:`Reuse`). Each page's digest is recorded in its algorithm's
    entry of ``summary`` (``pages``). Returns the pages written."""
    algos: dict[str, dict] = summary["algorithms"]
    written = [out / "index.html"]
    written[0].write_text(render_index(summary), encoding="utf-8")
    rdir = out / "report"
    rdir.mkdir(exist_ok=True)
    widths = _widths(algos)
    figs = Figures(summary, thumbs)
    figs.measured_by = "metric" if measure is not None else "hashes"
    for key, e in algos.items():
        adir = rdir / key
        adir.mkdir(exist_ok=True)
        parts = partitions(summary, key)
        e["pages"] = {}
        for k in range(len(e["thresholds"])):
            written += _threshold_pages(adir, key, e, k, parts, figs, algos, widths, measure, reuse)
    return written


def metric_measure(result) -> Measure:
    """Distances as the run's metrics measured them (isometric- and video-aware)."""
    by_key = {c.key: c for c in result.algorithms}

    def measure(key: str, members: np.ndarray, original: int) -> tuple[list[int], int]:
        m = by_key[key].metric
        d = m.between(np.full(len(members), original), members)
        sample = members[:DIAMETER_SAMPLE]
        diameter = int(m.matrix(sample).max()) if len(sample) > 1 else 0
        return [int(x) for x in d], diameter
    return measure


def write_report(staging: Path, home: Path, summary: dict, result=None, *, progress=None, workers: int = 0,
                 file_timeout: float | None = 300.0, reuse: Reuse | None = None) -> set[str]:
    """Thumbnails and the HTML report for a new tree built in ``staging``. Thumbnails are
    made once per file (where hashing did not make them) into ``home/.mhc/thumbs``
    (:meth:`~mhc.output.OutputFolder.mhc_home`) and kept across runs. Returns the names of
    the thumbnails the report uses (the others can go once it is in place)."""
    from .thumbs import ensure_thumbs, thumb_donors

    thumbs = ensure_thumbs(summary["files"], home, kinds=summary["kinds"], workers=workers, progress=progress,
                           file_timeout=file_timeout, donors=lambda: thumb_donors(summary.get("cache"), summary["output"], summary.get("input")))
    _record_thumbs(summary, thumbs)
    build_report(staging, summary, thumbs, metric_measure(result) if result is not None else None, reuse)
    return {os.path.basename(t) for t in thumbs.values()}


def _record_thumbs(summary: dict, thumbs: dict[str, str]) -> None:
    """Each file's thumbnail name in summary.json: `mhc report` finds them there for files
    it cannot reach (the input moved or unmounted), since the name comes from the file."""
    summary.setdefault("file_info", {})["thumb"] = [os.path.basename(thumbs[f]) if f in thumbs else None
                                                    for f in summary["files"]]


def rebuild_report(output: str | Path, *, workers: int = 0) -> Path:
    """Rebuild ``index.html`` and ``report/`` of an existing output from its summary.json
    (the new report is built aside and swapped in with the tree, like a run's)."""
    from .discover import MARKER
    from .output import OutputFolder
    from .summary import read_summary, write_json
    from .thumbmarks import THUMB_DIR, thumbs_written
    from .thumbs import ensure_thumbs, prune_thumbs, thumb_donors

    out = Path(os.path.abspath(output))
    summary = read_summary(out)
    if not os.path.isdir(summary["input"]):  # the pages are rebuilt, but their pictures point there
        log.warning("the input %s this output was made from is gone: the folders' links and the pages' pictures "
                    "point there (thumbnails still show). Run mhc -i <its new place> -o %s to link them again",
                    summary["input"], out)
    with OutputFolder(out, Path(summary["input"])) as of:  # (read_summary checked it is there)
        staging = of.stage()
        recorded = (summary.get("file_info") or {}).get("thumb") or []
        thumbs = ensure_thumbs(summary["files"], of.out, kinds=summary.get("kinds"), workers=workers,
                               recorded=recorded,
                               donors=lambda: thumb_donors(summary.get("cache"), out, summary.get("input")))
        _record_thumbs(summary, thumbs)
        build_report(staging, summary, thumbs)
        write_json(staging / "summary.json", summary)  # with the new pages' digests
        for entry in os.scandir(of.out):
            if entry.name not in ("index.html", "report", "summary.json", MARKER):
                of.keep(entry.name)
        of.commit()
        thumbs_written(of.out / THUMB_DIR)
        # (the thumbnails summary.json named stay, whether or not their files can be reached now)
        prune_thumbs(of.out, {os.path.basename(t) for t in thumbs.values()} | {t for t in recorded if t})
    return out / "index.html"
