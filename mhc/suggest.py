"""Suggesting a threshold: the last one before unrelated pictures start to link up.

Distances between unrelated pictures follow a bell around half the hash bits (for phash_8
on real photos: median 32 bits, 1st percentile 21). mhc measures that bell on the
collection itself, from all pairs of an evenly spaced sample of up to 2,000 files (robust
centre and spread: median and MAD, so the few true duplicates in the sample do not
matter), and suggests the largest threshold at which fewer than one pair among all the
collection's pairs of unrelated pictures is expected to fall within it. Above it, clusters
start to chain unrelated pictures together.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .pairs import distances

SAMPLE = 2000


@dataclass(frozen=True)
class Suggestion:
    threshold: int
    median: float  # bits between unrelated pictures (sample median)
    spread: float  # robust standard deviation of those distances
    sample_files: int
    expected_false_pairs: float  # expected pairs of unrelated pictures within the threshold
    explanation: str

    def to_dict(self) -> dict:
        return asdict(self)


def suggest_threshold(codes: np.ndarray, thresholds: list[int], bits: int) -> Suggestion | None:
    """The suggested threshold among ``thresholds`` for packed ``codes`` (None: < 3 files)."""
    n = codes.shape[0]
    if n < 3 or not thresholds:
        return None
    idx = np.unique(np.linspace(0, n - 1, min(n, SAMPLE)).astype(np.int64))
    sample = codes[idx]
    d = distances(sample, slice(None), slice(None))
    iu = np.triu_indices(len(idx), k=1)
    dist = d[iu].astype(np.float64)
    med = float(np.median(dist))
    spread = max(1.0, 1.4826 * float(np.median(np.abs(dist - med))))
    pairs = n * (n - 1) / 2

    def expected(t: int) -> float:
        z = (t + 0.5 - med) / spread
        return pairs * 0.5 * math.erfc(-z / math.sqrt(2))

    ok = [t for t in thresholds if expected(t) < 1.0]
    t = max(ok) if ok else min(thresholds)
    e = expected(t)
    text = (
        f"Unrelated pictures in this collection differ by {med:.0f} bits (median; spread "
        f"{spread:.1f}; from {len(idx)} sampled files). At threshold {t}, about {e:.2g} of the "
        f"{pairs:,.0f} pairs of files are expected to link by chance (less than one); above it, "
        f"clusters start to chain unrelated pictures."
        if ok else
        f"Unrelated pictures in this collection differ by only {med:.0f} bits (median; spread "
        f"{spread:.1f}): even the lowest threshold may link some by chance. Try a longer hash."
    )
    return Suggestion(t, med, spread, len(idx), e, text)
