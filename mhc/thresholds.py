"""Threshold ranges: Hamming distances in bits, inclusive (``distance <= t``)."""
from __future__ import annotations

import re

from .algorithms import Algorithm
from .errors import UsageError

# image-clustering's ranges per hash size: size -> (stop, step), stop included
# (its code runs range(0, 20, 1), range(0, 60, 2), range(0, 110, 3), range(0, 200, 5)).
_IMAGE_CLUSTERING = {8: (19, 1), 12: (58, 2), 16: (108, 3), 20: (195, 5)}


# Other sizes sweep the measured spread of copies, in steps of about 1 % of the bits
# (benchmarks/distances.py on both labelled corpora, docs/benchmarks.md): copies of phash
# and whash reach 23-31 % of the bits (95th percentile), those of ahash and dhash 4-11 %;
# unrelated pictures begin to link at 14-33 % (1st percentile), and half of them are 40-50 %
# apart. Beyond these spans every threshold folder is one chain.
SPAN = {"phash": 0.35, "whash": 0.35, "ahash": 0.25, "dhash": 0.25, "dhash_vertical": 0.25}


def default_thresholds(algo: Algorithm) -> list[int]:
    """image-clustering's range for hash sizes 8, 12, 16 and 20; other sizes sweep the
    measured span of copies of their algorithm (:data:`SPAN`) in ~1 % steps.

    >>> default_thresholds(Algorithm("phash", 8))[-1]
    19
    >>> default_thresholds(Algorithm("phash", 32))[-1], default_thresholds(Algorithm("phash", 32))[1]
    (358, 10)
    """
    if algo.name != "colorhash" and algo.size in _IMAGE_CLUSTERING:
        stop, step = _IMAGE_CLUSTERING[algo.size]
        return list(range(0, stop + 1, step))
    if algo.name in SPAN:
        stop = max(1, round(algo.bits * SPAN[algo.name]))
        return list(range(0, stop + 1, max(1, round(algo.bits / 100))))
    # colorhash (histograms, not structure): the nearest tabulated size, scaled to its bits
    ref = min(_IMAGE_CLUSTERING, key=lambda s: abs(s * s - algo.bits))
    stop, step = _IMAGE_CLUSTERING[ref]
    scale = algo.bits / (ref * ref)
    return list(range(0, max(1, round(stop * scale)) + 1, max(1, round(step * scale))))


THRESHOLDS_HELP = (
    "Hamming distances in bits, inclusive. Defaults for hash sizes 8, 12, 16, 20 as image-clustering: "
    "0:19:1, 0:58:2, 0:108:3, 0:195:5; other sizes sweep 0 to 35% of the bits for phash and whash, 0 to 25% "
    "for ahash and dhash, in steps of 1% (e.g. phash_32, 1024 bits: 0:358:10), where copies were measured to "
    "lie. -t also takes percentages of the bits (0%:30%:2%), and a list of values or ranges (2,5,10 or "
    "0:4:1,8,16); STOP is clipped to the hash's bits.")
MAX_STEPS = 100_000
_PART = r"\s*(\d+(?:\.\d+)?)\s*(%?)\s*"
_RANGE = re.compile(rf"^{_PART}(?::{_PART}(?::{_PART})?)?$")


def parse_thresholds(spec: str | None, algo: Algorithm) -> list[int]:
    """Thresholds for ``algo`` from ``START:STOP:STEP`` (STOP included), a single value, or
    a comma-separated list of both (``2,5,10``, ``0:4:1,8,16``).

    Parts are bits (``0:20:2``) or percentages of the hash's bits (``0%:30%:2%``);
    percentages are rounded to whole bits and repeated values dropped.
    ``None`` gives :func:`default_thresholds`.
    """
    if spec is None:
        return default_thresholds(algo)
    if "," in spec:  # the folders to compare, picked by hand
        items = spec.split(",")
        if any(not item.strip() for item in items):
            raise UsageError(f"--thresholds {spec!r} has an empty item; write values or ranges between commas, "
                             f"e.g. 2,5,10")
        return sorted(set().union(*(parse_thresholds(item.strip(), algo) for item in items)))
    m = _RANGE.match(spec)
    if not m:
        raise UsageError(
            f"--thresholds {spec!r} is not START:STOP:STEP; write e.g. 0:19:1 (bits) "
            f"or 0%:30%:2% (percent of the hash bits), one value like 10, or a list like 2,5,10"
        )
    groups = m.groups()
    parts: list[tuple[float, bool]] = []
    for i in range(0, 6, 2):
        if groups[i] is not None:
            parts.append((float(groups[i]), groups[i + 1] == "%"))
    if any(pct != parts[0][1] for _, pct in parts):
        raise UsageError(f"--thresholds {spec!r} mixes bits and percentages; use one kind, e.g. 0%:30%:2%")

    def bits(value: float, pct: bool) -> float:
        return value * algo.bits / 100.0 if pct else value

    start = bits(*parts[0])
    stop = bits(*parts[1]) if len(parts) > 1 else start
    step = bits(*parts[2]) if len(parts) > 2 else 1.0
    if not parts[0][1] and any(v != int(v) for v, _ in parts):
        raise UsageError(f"--thresholds {spec!r}: bit thresholds are whole numbers; use % for fractions")
    if step <= 0:
        raise UsageError(f"--thresholds {spec!r}: STEP must be positive")
    if stop < start:
        raise UsageError(f"--thresholds {spec!r} is an empty range: STOP is below START")
    if start > algo.bits:
        raise UsageError(
            f"--thresholds {spec!r}: START exceeds the {algo.bits} bits of {algo.key}; "
            f"use at most {algo.bits} or a percentage"
        )
    # a distance can never exceed the hash's bits: STOP is clipped (one range serves every
    # hash size), so the loop below is bounded whatever the user typed
    stop = min(stop, float(algo.bits))
    if (stop - start) / step > MAX_STEPS:
        raise UsageError(f"--thresholds {spec!r} makes more than {MAX_STEPS:,} thresholds; use a larger STEP")
    values: list[int] = []
    k = 0
    while True:
        v = start + k * step
        if v > stop + 1e-9:
            break
        t = min(algo.bits, int(round(v)))
        if not values or values[-1] != t:
            values.append(t)
        k += 1
    return values


def one_threshold_form(spec: str) -> re.Match:
    """Check the form of one threshold (bits or a percentage; its range needs the algorithm:
    :func:`one_threshold`), so a typo is said before anything is looked up."""
    m = re.fullmatch(r"\s*(\d+)(%?)\s*", spec)
    if not m:
        raise UsageError(f"-t {spec!r} is not one threshold; write bits (-t 20) or percent of the hash's bits "
                         f"(-t 10%)")
    return m


def one_threshold(spec: str, algo: Algorithm) -> int:
    """One threshold (``-t`` of ``pairs`` and ``hydrus push``): bits, or a percentage of
    the hash's bits converted as a sweep's is (``10%`` of 64 bits is 6)."""
    m = one_threshold_form(spec)
    if int(m.group(1)) > (100 if m.group(2) else algo.bits):
        raise UsageError(f"-t {spec.strip()}: {algo.key} has {algo.bits} bits; use at most {algo.bits}, or a "
                         f"percentage up to 100%")
    return parse_thresholds(spec.strip(), algo)[0]
