"""Precision: rotated and mirrored copies, verified links, clusters that do not chain.

- Isometric matching: the distance of two images is the least over the 8 rotations and
  mirrors of one of them (hashes of all 8 come from the one decoded image and are cached).
- SSIM verification: a candidate link is kept only if the two images' small grey versions
  are structurally similar (scikit-image's SSIM; with isometric matching, the best of the
  8 alignments).
- Size-capped single linkage (``max_cluster_size``) and complete linkage (every pair of
  a cluster within the threshold) instead of plain connected components.
- Combined evidence: a link needs every named algorithm to agree within its threshold.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from .pairs import Edges, distances, iter_pairs
from .sweep import Partition, make_partition

# Chosen on the two labelled corpora (docs/benchmarks.md): it keeps 99 % of true pairs (their 1st
# percentile is 0.72-0.74) and drops ~65 % of the unrelated candidates (median 0.63).
SSIM_DEFAULT = 0.7


# -- isometric distances ---------------------------------------------------------
def isometric_edges(codes: np.ndarray, variants: np.ndarray, max_distance: int,
                    allowed: np.ndarray | None = None, block_elems: int = 1 << 22) -> Iterator[Edges]:
    """Pairs whose least distance over the 8 dihedral variants is within ``max_distance``.

    ``codes``: (n, words) identity hashes; ``variants``: (n, 8, words), variant 0 = identity.
    ``allowed``: only these file indices take part (e.g. images, not videos).
    d(a, b) = min over k of min(d(T_k a, b), d(a, T_k b)), so it is symmetric.
    """
    idx = np.arange(len(codes)) if allowed is None else np.asarray(allowed)
    if len(idx) < 2:
        return
    base = codes[idx]
    var = variants[idx]
    m = len(idx)
    rows = max(1, block_elems // max(1, m * 8))
    for s in range(0, m, rows):
        e = min(m, s + rows)
        q = var[s:e].reshape(-1, var.shape[2])  # (rows*8, words)
        both = np.concatenate([q, base])
        d = distances(both, slice(0, len(q)), slice(len(q), None)).reshape(e - s, 8, m).min(axis=1)
        r, c = np.nonzero(d <= max_distance)
        r = r + s
        keep = r != c
        i, j = idx[r[keep]], idx[c[keep]]
        # (a, b) and (b, a) both appear: the sweep keeps the least distance of a pair
        yield Edges(np.minimum(i, j), np.maximum(i, j), d[r[keep] - s, c[keep]].astype(np.int32))


def isometric_distance_matrix(codes: np.ndarray, variants: np.ndarray | None, members: np.ndarray) -> np.ndarray:
    """All pairwise distances among ``members`` (isometric when ``variants`` is given)."""
    base = codes[members]
    if variants is None:
        return distances(base, slice(None), slice(None)).astype(np.int32)
    q = variants[members].reshape(-1, variants.shape[2])
    d = distances(np.concatenate([q, base]), slice(0, len(q)), slice(len(q), None))
    d = d.reshape(len(members), 8, len(members)).min(axis=1).astype(np.int32)
    return np.minimum(d, d.T)


# -- SSIM verification ---------------------------------------------------------------
def ssim_filter(thumbs: dict[int, np.ndarray], threshold: float, isometric: bool,
                on_score: Callable[[int, int, float], None] | None = None) -> Callable[[Edges], Edges]:
    """A filter for edge blocks: keeps pairs whose thumbnails' SSIM is >= ``threshold``.
    Pairs where either side has no thumbnail (videos) pass unchanged."""
    try:
        from skimage.metrics import structural_similarity
    except ImportError:
        from .errors import UsageError

        raise UsageError("--verify ssim needs scikit-image: pip install 'mhc[precision]'") from None

    def score(a: np.ndarray, b: np.ndarray) -> float:
        if not isometric:
            return float(structural_similarity(a, b, data_range=255))
        return max(float(structural_similarity(_dihedral(a, k), b, data_range=255)) for k in range(8))

    def filt(e: Edges) -> Edges:
        keep = np.ones(len(e), dtype=bool)
        for n, (i, j) in enumerate(zip(e.i.tolist(), e.j.tolist())):
            a, b = thumbs.get(i), thumbs.get(j)
            if a is None or b is None:
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


# -- other linkages ---------------------------------------------------------------
def capped_sweep(n: int, forest: Edges, thresholds: Iterable[int], max_size: int | None = None,
                 cannot_link: Iterable[tuple[int, int]] = ()) -> Iterator[Partition]:
    """Single linkage under constraints: edges are joined weakest-last (ascending distance);
    a join that would grow a cluster past ``max_size``, or put a ``cannot_link`` pair in one
    cluster ("not a duplicate"), is refused, so a chain is split along its weakest links.
    Clusters stay nested across thresholds."""
    from networkx.utils import UnionFind

    forest = forest.sorted()
    banned: dict[int, set[int]] = {}
    for a, b in cannot_link:
        banned.setdefault(a, set()).add(b)
        banned.setdefault(b, set()).add(a)
    uf = UnionFind()
    marked: dict[int, set[int]] = {}  # root -> members that have a cannot-link partner
    k = 0
    first = True
    for t in sorted(set(thresholds)):
        changed = False
        while k < len(forest) and forest.d[k] <= t:
            a, b = int(forest.i[k]), int(forest.j[k])
            k += 1
            ra, rb = uf[a], uf[b]
            if ra == rb:
                continue
            if max_size and uf.weights[ra] + uf.weights[rb] > max_size:
                continue
            ma, mb = marked.get(ra, set()) | ({a} & banned.keys()), marked.get(rb, set()) | ({b} & banned.keys())
            if any(banned[x] & mb for x in ma):
                continue
            uf.union(a, b)
            root = uf[a]
            marked[root] = ma | mb
            changed = True
        groups: dict[int, list[int]] = {}
        for x in list(uf.parents):
            groups.setdefault(uf[x], []).append(x)
        comps = [np.array(sorted(g), dtype=np.int64) for g in groups.values() if len(g) > 1]
        yield make_partition(n, t, comps, changed or first)
        first = False


def complete_sweep(n: int, forest: Edges, thresholds: list[int], dist: Callable[[np.ndarray], np.ndarray],
                   max_component: int = 20_000) -> Iterator[Partition]:
    """Complete linkage: every pair in a cluster within the threshold. Complete-linkage
    clusters lie inside single-linkage components, so each component at the largest
    threshold is clustered on its own (scipy's hierarchy on its distance matrix)."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    from .errors import MhcError
    from .sweep import sweep

    top = list(sweep(n, forest, [max(thresholds)]))[0]
    cuts: list[tuple[np.ndarray, np.ndarray]] = []  # (members, linkage matrix)
    for comp in top.clusters:
        if len(comp) > max_component:
            raise MhcError(f"--linkage complete: a chain of {len(comp):,} files at threshold {max(thresholds)} needs "
                           f"a {len(comp):,}^2 distance matrix; lower the thresholds or use --max-cluster-size")
        cuts.append((comp, linkage(squareform(dist(comp), checks=False).astype(float), method="complete")))
    prev = None
    for t in sorted(set(thresholds)):
        comps = []
        for members, z in cuts:
            labels = fcluster(z, t=t, criterion="distance")
            for lab in np.unique(labels):
                part = members[labels == lab]
                if len(part) > 1:
                    comps.append(np.sort(part))
        key = [tuple(c.tolist()) for c in sorted(comps, key=lambda c: (int(c[0]), len(c)))]
        yield make_partition(n, t, comps, key != prev)
        prev = key


# -- combined evidence -------------------------------------------------------------
def combined_edges(per_algo: list[tuple[np.ndarray, int]]) -> Edges:
    """Pairs within every algorithm's threshold; distance = the largest share of its
    threshold any algorithm needs, in percent (0-100), so one sweep covers them all."""
    result: dict[tuple[int, int], int] | None = None
    for codes, t in per_algo:
        e = Edges.concat(list(iter_pairs(codes, t)))
        pct = np.ceil(100 * e.d / max(1, t)).astype(int) if t else np.zeros(len(e), dtype=int)
        here = {(int(i), int(j)): int(p) for i, j, p in zip(e.i, e.j, pct)}
        result = here if result is None else {k: max(v, here[k]) for k, v in result.items() if k in here}
    if not result:
        return Edges.empty()
    keys = np.array(list(result), dtype=np.int64)
    return Edges(keys[:, 0], keys[:, 1], np.array(list(result.values()), dtype=np.int32))
