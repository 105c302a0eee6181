"""Precision: verified links, and clusters that do not chain.

Every linkage here returns *joins*: the merges it accepts, each as a pair of files and the
distance at which the two clusters meet. The partition at a threshold is the components
of the joins within it (:func:`mhc.sweep.sweep`), so clusters nest across thresholds
whatever the linkage.

- SSIM verification: a candidate link is kept only if the two images' small grey
  versions are structurally similar (scikit-image's SSIM; with isometric matching, the
  best of the 8 alignments).
- Constrained single linkage (``max_size``, cannot-link pairs): edges are joined
  weakest-last; a join that would grow a cluster past ``max_size`` or put a "not a
  duplicate" pair together is refused, so a chain splits along its weakest links.
- Complete linkage: every pair of a cluster within the threshold (scipy's hierarchy),
  with the same constraints.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from .errors import MhcError
from .pairs import Edges

# Chosen on the two labelled corpora (docs/benchmarks.md): it keeps 99 % of true pairs (their 1st
# percentile is 0.72-0.74) and drops ~65 % of the unrelated candidates (median 0.63).
SSIM_DEFAULT = 0.7
COMPLETE_MAX_COMPONENT = 20_000


# -- SSIM verification ---------------------------------------------------------------
def ssim_filter(thumbs: dict[int, np.ndarray], threshold: float, isometric: bool,
                on_score: Callable[[int, int, float], None] | None = None,
                exempt: Edges | None = None) -> Callable[[Edges], Edges]:
    """A filter for edge blocks: keeps pairs whose thumbnails' SSIM is >= ``threshold``.
    Pairs where either side has no thumbnail (videos), and the ``exempt`` pairs (crops
    confirmed by their pixels), pass unchanged."""
    skip = set() if exempt is None else set(zip(exempt.i.tolist(), exempt.j.tolist()))
    from skimage.metrics import (
        structural_similarity,  # installed: checked by validate()
    )

    def score(a: np.ndarray, b: np.ndarray) -> float:
        if not isometric:
            return float(structural_similarity(a, b, data_range=255))
        return max(float(structural_similarity(_dihedral(a, k), b, data_range=255)) for k in range(8))

    def filt(e: Edges) -> Edges:
        keep = np.ones(len(e), dtype=bool)
        for n, (i, j) in enumerate(zip(e.i.tolist(), e.j.tolist())):
            a, b = thumbs.get(i), thumbs.get(j)
            if a is None or b is None or (i, j) in skip:
                continue
            s = score(a, b)
            if on_score:
                on_score(i, j, s)
            keep[n] = s >= threshold
        return Edges(e.i[keep], e.j[keep], e.d[keep])

    return filt


def _dihedral(a: np.ndarray, k: int) -> np.ndarray:
    """The same 8 transforms as hashing.DIHEDRAL, on an array."""
    return [a, np.rot90(a, 1), np.rot90(a, 2), np.rot90(a, 3), a[:, ::-1], a[::-1, :], a.T, np.rot90(a, 2).T][k]


def filtered(blocks: Iterable[Edges], filt: Callable[[Edges], Edges]) -> Iterator[Edges]:
    for b in blocks:
        yield filt(b)


# -- constrained single linkage -----------------------------------------------------------
def capped_joins(forest: Edges, max_size: int | None = None,
                 cannot_link: Iterable[tuple[int, int]] = ()) -> Edges:
    """The joins single linkage accepts under constraints, weakest-last: a join that would
    grow a cluster past ``max_size``, or put a ``cannot_link`` pair in one cluster, is
    refused. Which joins are refused does not depend on where thresholds cut, so the
    clusters of every threshold are components of the accepted ones."""
    from networkx.utils import UnionFind

    forest = forest.sorted()
    banned: dict[int, set[int]] = {}
    for a, b in cannot_link:
        banned.setdefault(a, set()).add(b)
        banned.setdefault(b, set()).add(a)
    uf = UnionFind()
    marked: dict[int, set[int]] = {}  # root -> members that have a cannot-link partner
    keep = np.zeros(len(forest), dtype=bool)
    for k, (a, b) in enumerate(zip(forest.i.tolist(), forest.j.tolist())):
        ra, rb = uf[a], uf[b]
        if ra == rb:
            continue
        if max_size and uf.weights[ra] + uf.weights[rb] > max_size:
            continue
        ma = marked.get(ra, set()) | ({a} & banned.keys())
        mb = marked.get(rb, set()) | ({b} & banned.keys())
        if any(banned[x] & mb for x in ma):
            continue
        uf.union(a, b)
        marked[uf[a]] = ma | mb
        keep[k] = True
    return Edges(forest.i[keep], forest.j[keep], forest.d[keep])


# -- complete linkage -------------------------------------------------------------------
def complete_joins(components: list[np.ndarray], dist: Callable[[np.ndarray], np.ndarray],
                   max_size: int | None = None, max_component: int = COMPLETE_MAX_COMPONENT) -> Edges:
    """Complete-linkage joins: two clusters meet at the largest distance between their
    members. Complete-linkage clusters lie inside single-linkage components, so each
    component (``components``, e.g. at the largest threshold) is clustered on its own
    from ``dist(members)`` (scipy's hierarchy). With ``max_size``, a merge past it is
    refused, and so is every later merge of either side (they would need the refused one)."""
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    parts = []
    for comp in components:
        if len(comp) > max_component:
            raise MhcError(f"--linkage complete: a chain of {len(comp):,} files needs a {len(comp):,}^2 distance "
                           f"matrix; lower the thresholds or use --max-cluster-size")
        z = linkage(squareform(dist(comp), checks=False).astype(float), method="complete")
        m = len(comp)
        rep = list(range(m)) + [0] * (m - 1)  # a member of each hierarchy node
        size = [1] * m + [0] * (m - 1)
        blocked = [False] * (2 * m - 1)
        i, j, d = [], [], []
        for k, (a, b, height, count) in enumerate(z):
            a, b, node = int(a), int(b), m + k
            rep[node], size[node] = rep[a], int(count)
            if blocked[a] or blocked[b] or (max_size and count > max_size):
                blocked[node] = True
                continue
            i.append(comp[rep[a]])
            j.append(comp[rep[b]])
            d.append(int(np.ceil(height)))
        parts.append(Edges(np.array(i, dtype=np.int64), np.array(j, dtype=np.int64), np.array(d, dtype=np.int32)))
    return Edges.concat(parts)


def apart(dist: Callable[[np.ndarray], np.ndarray], pairs: Iterable[tuple[int, int]],
          far: int) -> Callable[[np.ndarray], np.ndarray]:
    """A distance-matrix function where the given pairs are ``far`` apart."""
    partner: dict[int, set[int]] = {}
    for a, b in pairs:
        partner.setdefault(a, set()).add(b)
        partner.setdefault(b, set()).add(a)
    if not partner:
        return dist

    def fn(members: np.ndarray) -> np.ndarray:
        d = dist(members)
        pos = {int(m): k for k, m in enumerate(members)}
        for m, k in pos.items():
            for other in partner.get(m, ()):
                if other in pos:
                    d[k, pos[other]] = d[pos[other], k] = far
        return d

    return fn
