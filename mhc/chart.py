"""The chart of the report's index: per algorithm, the four counts against the threshold,
as inline SVG (no script, no CDN: the report works offline from ``file://``)."""
from __future__ import annotations

from markupsafe import Markup, escape

SERIES = [  # key in summary, label, colour
    ("clusters", "clusters", "#1f77b4"),
    ("clustered_files", "files in clusters", "#2ca02c"),
    ("largest", "largest cluster", "#d62728"),
    ("unclustered", "unclustered", "#7f7f7f"),
]


def chart_svg(key: str, entry: dict, n_files: int, width: int = 720, height: int = 260) -> Markup:
    """Inline SVG (scales with the page): the four counts against threshold, the suggestion
    marked with its label always inside the plot."""
    ths = entry["thresholds"]
    ts = [t["threshold"] for t in ths]
    left, right, top, bottom = 48, 16, 22, 36
    w, h = width - left - right, height - top - bottom
    tmin, tmax = min(ts), max(ts)
    ymax = max(1, n_files)

    def x(t: float) -> float:
        return left + (w * (t - tmin) / (tmax - tmin) if tmax > tmin else w / 2)

    def y(v: float) -> float:
        return top + h - h * v / ymax

    unit = "percent of each threshold" if entry.get("unit") == "%" else "bits"
    parts = [f'<svg class=chart role=img aria-label="{escape(key)} counts by threshold" viewBox="0 0 {width} '
             f'{height}" preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">',
             f'<rect x={left} y={top} width={w} height={h} fill="#fff" stroke="#ccc"/>']
    for frac in (0, 0.25, 0.5, 0.75, 1):
        v = ymax * frac
        parts.append(f'<line x1={left} x2={left + w} y1={y(v):.1f} y2={y(v):.1f} stroke="#eee"/>'
                     f'<text x={left - 4} y={y(v) + 4:.1f} text-anchor=end>{v:.0f}</text>')
    for t in ts[::max(1, len(ts) // 10)]:
        parts.append(f'<text x={x(t):.1f} y={top + h + 14} text-anchor=middle>{t}</text>')
    parts.append(f'<text x={left + w / 2} y={height - 4} text-anchor=middle>threshold ({unit})</text>')
    sug = (entry.get("suggested") or {}).get("threshold")
    if sug is not None:
        xs = x(sug)
        anchor, dx = ("end", -4) if xs > left + w / 2 else ("start", 4)
        parts.append(f'<line class=suggested x1={xs:.1f} x2={xs:.1f} y1={top} y2={top + h} stroke="#2a2" '
                     f'stroke-width=3 stroke-dasharray="6 3"><title>suggested threshold {sug}</title></line>'
                     f'<text class=suggested-label x={xs + dx:.1f} y={top - 6} fill="#2a2" text-anchor={anchor}>'
                     f'suggested: {sug}</text>')
    for k, label, colour in SERIES:
        pts = " ".join(f"{x(t['threshold']):.1f},{y(t[k]):.1f}" for t in ths)
        parts.append(f'<polyline class="series {k}" fill=none stroke="{colour}" stroke-width=2 points="{pts}"/>')
        parts += [f'<circle cx={x(t["threshold"]):.1f} cy={y(t[k]):.1f} r=2.5 fill="{colour}"><title>{escape(label)} '
                  f'at {t["threshold"]}: {t[k]}</title></circle>' for t in ths]
    parts.append("</svg>")
    legend = "".join(f'<span style="color:{c}">━ {escape(label)}</span>' for _, label, c in SERIES)
    return Markup("".join(parts) + f"<div class=legend>{legend}</div>")
