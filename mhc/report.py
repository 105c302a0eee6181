"""The HTML report: pick a threshold by looking, not by opening 400 folders.

Static pages that work offline from ``file://`` (no CDN, no server, no script needed):

    <out>/index.html                         per algorithm: chart, suggestion, threshold table
    <out>/report/<algo>/thr_NNN.html          contact sheets, largest cluster first (paged)

Every name and path is escaped; images load lazily and pages hold at most PAGE_FILES
thumbnails, so a 10,000-file collection stays usable.
"""
from __future__ import annotations

import html
import os
import shlex
import urllib.parse
from pathlib import Path

from .pairs import hex_distance

PAGE_FILES = 1000
SERIES = [  # key in summary, label, colour
    ("clusters", "clusters", "#1f77b4"),
    ("clustered_files", "files in clusters", "#2ca02c"),
    ("largest", "largest cluster", "#d62728"),
    ("unclustered", "unclustered", "#7f7f7f"),
]
CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1,h2,h3{font-weight:600} a{color:#0b5cad} table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ddd;padding:2px 8px;text-align:right} th{background:#eee}
tr.suggested td{background:#e3f6e3;font-weight:600} .note{color:#555;max-width:60em}
nav{margin:.5em 0 1em;padding:.4em;background:#eee;border-radius:4px} nav a,nav span{margin-right:1em}
section.cluster{margin:1em 0;padding:.5em;background:#fff;border:1px solid #ddd;border-radius:4px}
.sheet{display:flex;flex-wrap:wrap;gap:8px} figure{margin:0;width:200px}
figure img{width:200px;height:150px;object-fit:contain;background:#ddd;display:block}
figcaption{font-size:12px;word-break:break-all} .d{color:#555} .missing{width:200px;height:150px;
display:flex;align-items:center;justify-content:center;background:#eee;color:#888}
svg text{font:11px sans-serif} .legend span{margin-right:1em}
details.ignore{font-size:11px;color:#666} details.ignore code{user-select:all;word-break:break-all}
"""


def esc(text: object) -> str:
    """HTML-escape anything shown (names may hold markup); undecodable bytes shown escaped."""
    s = str(text).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return html.escape(s, quote=True)


def file_url(path: str) -> str:
    """A ``file://`` URL for any path, bytes percent-encoded (also names that are not UTF-8)."""
    return "file://" + urllib.parse.quote(os.fsencode(path))


def page_name(threshold: int, width: int, page: int = 1) -> str:
    return f"thr_{threshold:0{width}d}" + (f"-{page}" if page > 1 else "") + ".html"


def _page(title: str, body: str, css_href: str | None = None) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width">'
        '<link rel=icon href="data:,">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )




def chart_svg(entry: dict, n_files: int, width: int = 720, height: int = 260) -> str:
    """Inline SVG: the four counts against threshold, the suggested threshold marked."""
    ts = [t["threshold"] for t in entry["thresholds"]]
    left, right, top, bottom = 48, 12, 12, 36
    w, h = width - left - right, height - top - bottom
    tmin, tmax = min(ts), max(ts)
    ymax = max(1, n_files)

    def x(t: float) -> float:
        return left + (w * (t - tmin) / (tmax - tmin) if tmax > tmin else w / 2)

    def y(v: float) -> float:
        return top + h - h * v / ymax

    parts = [f'<svg class=chart role=img aria-label="{esc(entry["key"])} counts by threshold" '
             f'width={width} height={height} viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">']
    parts.append(f'<rect x={left} y={top} width={w} height={h} fill="#fff" stroke="#ccc"/>')
    for frac in (0, 0.25, 0.5, 0.75, 1):
        v = ymax * frac
        parts.append(f'<line x1={left} x2={left + w} y1={y(v):.1f} y2={y(v):.1f} stroke="#eee"/>'
                     f'<text x={left - 4} y={y(v) + 4:.1f} text-anchor=end>{v:.0f}</text>')
    step = max(1, len(ts) // 10)
    for t in ts[::step]:
        parts.append(f'<text x={x(t):.1f} y={top + h + 14} text-anchor=middle>{t}</text>')
    parts.append(f'<text x={left + w / 2} y={height - 4} text-anchor=middle>threshold (bits)</text>')
    sug = (entry.get("suggested") or {}).get("threshold")
    if sug is not None:
        parts.append(f'<line class=suggested x1={x(sug):.1f} x2={x(sug):.1f} y1={top} y2={top + h} '
                     f'stroke="#2a2" stroke-width=3 stroke-dasharray="6 3"><title>suggested threshold {sug}</title></line>'
                     + (f'<text x={x(sug) - 4:.1f} y={top + 12} fill="#2a2" text-anchor=end>suggested: {sug}</text>'
                        if x(sug) > left + w * 0.8 else
                        f'<text x={x(sug) + 4:.1f} y={top + 12} fill="#2a2">suggested: {sug}</text>'))
    for key, label, colour in SERIES:
        pts = " ".join(f"{x(t['threshold']):.1f},{y(t[key]):.1f}" for t in entry["thresholds"])
        parts.append(f'<polyline class="series {key}" fill=none stroke="{colour}" stroke-width=2 points="{pts}"/>')
        for t in entry["thresholds"]:
            parts.append(f'<circle cx={x(t["threshold"]):.1f} cy={y(t[key]):.1f} r=2.5 fill="{colour}">'
                         f'<title>{esc(label)} at {t["threshold"]}: {t[key]}</title></circle>')
    parts.append("</svg>")
    legend = "".join(f'<span style="color:{c}">━ {esc(label)}</span>' for _, label, c in SERIES)
    return "".join(parts) + f'<div class=legend>{legend}</div>'


def build_report(out: Path, summary: dict, thumbs: dict[str, str], distances=None) -> list[Path]:
    """Write ``index.html`` and ``report/`` under ``out`` from a summary (as in summary.json).
    ``thumbs``: file path -> thumbnail path relative to ``out``. ``distances(key,
    partition)``: each member's distance to its cluster's first file (default: from the
    hashes in the summary). Returns the pages written."""
    from .summary import partitions

    files: list[str] = summary["files"]
    algos: dict[str, dict] = summary["algorithms"]
    written: list[Path] = []
    rdir = out / "report"
    rdir.mkdir(exist_ok=True)
    widths = _widths(algos)
    (out / "index.html").write_text(render_index(summary), encoding="utf-8")
    written.append(out / "index.html")

    # -- one page (or several) per threshold folder --------------------------------
    for key, e in algos.items():
        adir = rdir / key
        adir.mkdir(exist_ok=True)
        parts = partitions(summary, key)
        hex_of = dict(enumerate(e.get("hashes", [])))
        for k, (t, p) in enumerate(zip(e["thresholds"], parts)):
            members = [c.tolist() for c in p.clusters]
            dist = distances(key, p) if distances else None
            written += _threshold_pages(adir, key, e, k, t, members, dist, files, hex_of, thumbs, algos, widths,
                                        summary.get("input", ""))
    return written


def write_report(staging: Path, live: Path, summary: dict, result=None, *, progress=None, workers: int = 0) -> None:
    """Thumbnails and the HTML report for a new tree built in ``staging``. Thumbnails are
    made once per file into the output's ``.mhc/thumbs`` (``live``: the current output, if
    any, else the staging tree) and kept across runs."""
    from .thumbs import ensure_thumbs

    home = live if (live / ".mhc").is_dir() else staging
    thumbs = ensure_thumbs(summary["files"], home, kinds=summary["kinds"], workers=workers, progress=progress)
    by_key = {c.key: c for c in result.algorithms} if result is not None else {}
    build_report(staging, summary, thumbs,
                 (lambda key, p: by_key[key].first_distances(p)) if by_key else None)


def render_index(summary: dict) -> str:
    """``index.html``: per algorithm a chart, the suggestion and the table of thresholds."""
    files: list[str] = summary["files"]
    algos: dict[str, dict] = summary["algorithms"]
    widths = _widths(algos)
    c = summary.get("counts", {})
    body = [f"<h1>mhc report</h1><p>Input <code>{esc(summary.get('input', ''))}</code>: "
            f"{c.get('found', len(files))} files found: {c.get('decoded', 0)} decoded now, "
            f"{c.get('from_cache', 0)} from the cache, {c.get('failed', 0)} could not be read"
            + (' (<a href="errors.csv">errors.csv</a>)' if c.get("failed") else "") + ".</p>",
            (f"<p class=note>Computed in this run: {esc(', '.join(summary.get('computed_now', [])))}."
             + (f" Kept from earlier runs, recomputed from cached hashes for this input: "
                f"{esc(', '.join(summary['carried_over']))}." if summary.get("carried_over") else "") + "</p>"),
            "<p class=note>Each threshold folder links files whose hashes differ by at most that many bits. "
            "Open the suggested one first; go lower if a cluster holds pictures that are not the same, "
            "higher if copies stay apart.</p>"]
    for key, e in algos.items():
        e = dict(e, key=key)
        n = len(files)
        sug = (e.get("suggested") or {}).get("threshold")
        body.append(f'<section class=algo id="{esc(key)}"><h2>{esc(key)} <small>({e.get("bits", "?")} bits)</small></h2>')
        body.append(chart_svg(e, n))
        if e.get("suggested"):
            body.append(f'<p class="note suggestion"><b>Suggested threshold: {sug}.</b> '
                        f'{esc(e["suggested"]["explanation"])}</p>')
        body.append("<table class=thresholds><tr><th>threshold</th><th>clusters</th><th>files in clusters</th>"
                    "<th>largest cluster</th><th>unclustered</th><th>folder</th></tr>")
        for t in e["thresholds"]:
            href = f"report/{urllib.parse.quote(key)}/{page_name(t['threshold'], widths[key])}"
            cls = " class=suggested" if t["threshold"] == sug else ""
            body.append(f"<tr{cls}><td><a href=\"{href}\">{t['threshold']}</a></td><td>{t['clusters']}</td>"
                        f"<td>{t['clustered_files']}</td><td>{t['largest']}</td><td>{t['unclustered']}</td>"
                        f"<td style=text-align:left><a href=\"{href}\">{esc(t['folder'])}</a></td></tr>")
        body.append("</table></section>")

    return _page("mhc report", "\n".join(body))


def _widths(algos: dict[str, dict]) -> dict[str, int]:
    return {k: max(3, len(str(max(t["threshold"] for t in e["thresholds"])))) for k, e in algos.items()}


def _nearest(entry: dict, frac: float) -> int:
    bits = entry.get("bits") or 1
    return min((t["threshold"] for t in entry["thresholds"]), key=lambda v: abs(v / bits - frac))


def _threshold_pages(adir, key, e, k, t, clusters, dist, files, hex_of, thumbs, algos, widths, root) -> list[Path]:
    width = widths[key]
    ths = e["thresholds"]
    clustered = {i for c in clusters for i in c}
    unclustered = [i for i in range(len(files)) if i not in clustered]
    # pages of at most PAGE_FILES thumbnails: clusters in order, a cluster that does not fit
    # starts a new page (a giant one is split), unclustered files fill up from there
    width_rank = max(3, len(str(len(clusters))))
    pages: list[list[tuple[str, list[int], int | None, int]]] = [[]]
    count = 0

    def add(name: str, members: list[int], rank: int | None, fill: bool) -> None:
        nonlocal count
        rest = members
        while rest:
            room = PAGE_FILES - count
            if room <= 0 or (not fill and pages[-1] and len(rest) > room and len(rest) <= PAGE_FILES):
                pages.append([])
                count, room = 0, PAGE_FILES
            piece, rest = rest[:room], rest[room:]
            pages[-1].append((name, piece, rank, members[0] if members else -1))
            count += len(piece)

    for r, c in enumerate(clusters, 1):
        add(f"{r:0{width_rank}d}_{len(c)}", c, r, fill=False)
    add(f"unclustered_{len(unclustered)}", unclustered, None, fill=True)
    # distances to each cluster's first file as the sweep measured them (summary.json), else
    # from the hashes
    dist_of = {m: d for c, ds in zip(clusters, dist or []) for m, d in zip(c, ds)}
    frac = t["threshold"] / (e.get("bits") or 1)
    written = []
    for pno, blocks_here in enumerate(pages, 1):
        nav = ['<nav><a href="../../index.html">↑ all algorithms</a>']
        nav.append(f'<a href="../../index.html#{esc(key)}">{esc(key)}</a>')
        if k > 0:
            nav.append(f'<a rel=prev href="{page_name(ths[k - 1]["threshold"], width)}">← threshold {ths[k - 1]["threshold"]}</a>')
        if k + 1 < len(ths):
            nav.append(f'<a rel=next href="{page_name(ths[k + 1]["threshold"], width)}">threshold {ths[k + 1]["threshold"]} →</a>')
        others = [(ok, _nearest(oe, frac)) for ok, oe in algos.items() if ok != key]
        if others:
            nav.append("<span>same threshold in: " + " ".join(
                f'<a class=other href="../{urllib.parse.quote(ok)}/{page_name(v, widths[ok])}">{esc(ok)} {v}</a>'
                for ok, v in others) + "</span>")
        if len(pages) > 1:
            nav.append("<span>page " + " ".join(
                f"<b>{q}</b>" if q == pno else f'<a href="{page_name(t["threshold"], width, q)}">{q}</a>'
                for q in range(1, len(pages) + 1)) + "</span>")
        nav.append("</nav>")
        body = [f"<h1>{esc(key)} · threshold {t['threshold']}</h1>", "".join(nav),
                f"<p>{t['clusters']} clusters holding {t['clustered_files']} files (largest {t['largest']}), "
                f"{t['unclustered']} unclustered. Folder <code>{esc(key)}/{esc(t['folder'])}</code>.</p>"]
        for name, members, rank, first in blocks_here:
            figs = "".join(_figure(files[i], i, first, hex_of, thumbs, rank is not None, root,
                                   files[first] if first >= 0 else "", dist_of.get(i)) for i in members)
            if rank is None:
                body.append(f"<details class=unclustered><summary>{esc(name)} — files that matched nothing "
                            f"at this threshold ({len(members)} here)</summary><div class=sheet>{figs}</div></details>")
            else:
                body.append(f'<section class=cluster id="c{rank}"><h3>{esc(name)} · {len(members)} files</h3>'
                            f"<div class=sheet>{figs}</div></section>")
        page = adir / page_name(t["threshold"], width, pno)
        page.write_text(_page(f"{key} threshold {t['threshold']}", "\n".join(body)), encoding="utf-8")
        written.append(page)
    return written


def _figure(path: str, i: int, first: int, hex_of: dict, thumbs: dict[str, str], in_cluster: bool, root: str,
            first_path: str = "", distance: int | None = None) -> str:
    thumb = thumbs.get(path)
    img = (f'<img loading=lazy decoding=async alt="" src="../../{urllib.parse.quote(thumb)}">' if thumb
           else '<div class=missing>no preview</div>')
    dist = ""
    if in_cluster:
        if i == first:
            dist = '<span class=d>first file</span>'
        elif distance is not None:
            dist = f'<span class=d>distance {distance} to first</span>'
        elif i in hex_of and first in hex_of:
            dist = f'<span class=d>distance {hex_distance(hex_of[i], hex_of[first])} to first</span>'
    shown = os.path.relpath(path, root) if root and path.startswith(root.rstrip("/") + "/") else path
    mark = ""
    if in_cluster and i != first and first_path:
        cmd = f"mhc ignore {shlex.quote(first_path)} {shlex.quote(path)}"
        mark = f'<details class=ignore><summary>not a duplicate?</summary><code>{esc(cmd)}</code></details>'
    return (f'<figure><a href="{esc(file_url(path))}" title="{esc(path)}">{img}</a>'
            f"<figcaption><span class=path>{esc(shown)}</span><br>{dist}{mark}</figcaption></figure>")


def rebuild_report(output: str | Path, *, workers: int = 0) -> Path:
    """Rebuild ``index.html`` and ``report/`` of an existing output from its summary.json
    (the new report is built aside and swapped in with the tree, like a run's)."""
    from .discover import MARKER
    from .output import OutputFolder
    from .summary import read_summary
    from .thumbs import ensure_thumbs

    out = Path(os.path.abspath(output))
    summary = read_summary(out)
    with OutputFolder(out, Path(summary.get("input", "/nonexistent"))) as of:
        staging = of.stage()
        thumbs = ensure_thumbs(summary["files"], of.out, kinds=summary.get("kinds"), workers=workers)
        build_report(staging, summary, thumbs)
        for e in os.scandir(of.out):
            if e.name not in ("index.html", "report", MARKER):
                of.keep(e.name)
        of.commit()
    return out / "index.html"
