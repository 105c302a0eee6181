"""Pairs + thresholds -> one partition of the files per threshold.

Connected components at every threshold of a sweep are single-linkage clusters, so a
minimum spanning forest of the pair graph carries every threshold's partition. The
forest is built block by block from the pair stream, so memory stays O(files) however
many pairs fall under the largest threshold.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

# networkx and scipy are imported where used: together they are half a second of every
# run's start-up (measured with python -X importtime), and a warm rerun needs neither
# before it sweeps. Small inputs need neither at all (see SMALL_FILES).

from .pairs import Edges


@dataclass(frozen=True)
class Partition:
    """The clusters at one threshold: member indices (ascending), largest cluster first."""

    threshold: int
    clusters: list[np.ndarray]
    unclustered: np.ndarray
    changed: bool = True  # False: the same partition as the previous threshold of the sweep

    @property
    def clustered_files(self) -> int:
        return sum(len(c) for c in self.clusters)

    @property
    def largest(self) -> int:
        return len(self.clusters[0]) if self.clusters else 0


# Below these sizes the spanning forest and the components are found by a union-find in
# Python (Kruskal's algorithm): on 120 files it takes ~10 ms, where importing
# scipy.sparse.csgraph alone costs 0.18 s of a 3.5 s run. Above them scipy's C code wins.
SMALL_FILES = 2_000
SMALL_EDGES = 20_000


def find_root(parent: list[int], x: int) -> int:
    """Union-find: the root of ``x``'s set in the ``parent`` list, halving the path to it."""
    while parent[x] != x:
        parent[x] = parent[parent[x]]  # path halving
        x = parent[x]
    return x


def _small_msf(n: int, edges: Edges) -> Edges:
    """Kruskal's algorithm: the least-distance edge that joins two trees, in distance order
    (ties by pair, as everywhere: the forest is deterministic)."""
    order = np.lexsort((edges.j, edges.i, edges.d))
    parent = list(range(n))
    keep = []
    for k, a, b in zip(order.tolist(), edges.i[order].tolist(), edges.j[order].tolist()):
        ra, rb = find_root(parent, a), find_root(parent, b)
        if ra != rb:
            parent[ra] = rb
            keep.append(k)
    keep = np.array(keep, dtype=np.int64)
    i, j = edges.i[keep], edges.j[keep]
    return Edges(np.minimum(i, j).astype(np.int64), np.maximum(i, j).astype(np.int64), edges.d[keep].astype(np.int32))


def _msf(n: int, edges: Edges) -> Edges:
    if not len(edges):
        return edges
    if n <= SMALL_FILES and len(edges) <= SMALL_EDGES:
        return _small_msf(n, edges)
    # the sparse matrix below would add up a pair that comes twice: keep its least distance
    edges = edges.least()
    # scipy's Kruskal runs in C (DESIGN: networkx is ~10-70x slower on 1M nodes); weights
    # must be > 0 because 0 means "no edge", so distance d is stored as d + 1.
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import minimum_spanning_tree

    g = coo_matrix((edges.d.astype(np.int64) + 1, (edges.i, edges.j)), shape=(n, n)).tocsr()
    t = minimum_spanning_tree(g).tocoo()
    i, j = np.minimum(t.row, t.col), np.maximum(t.row, t.col)
    return Edges(i.astype(np.int64), j.astype(np.int64), (t.data - 1).astype(np.int32))


def spanning_forest(n: int, blocks: Iterable[Edges], *, merge_at: int = 4_000_000) -> Edges:
    """Minimum spanning forest (by distance) of ``n`` nodes and the edges in ``blocks``.

    Blocks are buffered up to ``merge_at`` edges, then folded into the forest, which
    never holds more than ``n - 1`` edges. Returned sorted by distance.
    """
    forest = Edges.empty()
    buf: list[Edges] = []
    held = 0
    for block in blocks:
        buf.append(block)
        held += len(block)
        if held >= merge_at:
            forest = _msf(n, Edges.concat([forest, *buf]))
            buf, held = [], 0
    if buf:
        forest = _msf(n, Edges.concat([forest, *buf]))
    return forest.sorted()


def sweep(n: int, forest: Edges, thresholds: Iterable[int], *, engine: str = "auto") -> Iterator[Partition]:
    """Partition ``n`` files at each threshold (ascending) using a spanning forest
    (or any edge set whose components match the full graph's).

    Components come from scipy's C connected components of the forest edges within the
    threshold. networkx, adding the edges to one graph incrementally, gives the same
    components (tests check both agree) but spends ~1 GB and minutes per threshold on a
    million-node forest where scipy takes 0.1 s (3 s vs 0.6 s over a 20-threshold sweep at
    100,000 files), and at 120 files importing it cost a run 0.13 s that scipy, imported
    anyway for the spanning forest, does not. Up to SMALL_FILES files a union-find in
    Python does it without importing either. ``engine``: "auto", "python", "networkx" or
    "scipy".
    """
    forest = forest.sorted()
    if engine == "auto":
        engine = "python" if n <= SMALL_FILES else "scipy"
    components = {"python": _python_components, "scipy": _scipy_components,
                  "networkx": lambda n, f: _networkx_components(f)}[engine](n, forest)
    prev: Partition | None = None
    last = -1
    for t in sorted(set(thresholds)):
        stop = int(np.searchsorted(forest.d, t, side="right"))
        if prev is not None and stop == last:  # every forest edge joins two components: no new edge, no change
            prev = Partition(t, prev.clusters, prev.unclustered, False)
        else:
            prev, last = make_partition(n, t, components(stop)), stop
        yield prev


def _networkx_components(forest: Edges) -> Callable[[int], list[np.ndarray]]:
    """Components (2+ files each) of the first ``stop`` forest edges; edges are added to
    one graph as ``stop`` grows."""
    import networkx as nx

    graph = nx.Graph()
    added = 0

    def components(stop: int) -> list[np.ndarray]:
        nonlocal added
        graph.add_edges_from(zip(forest.i[added:stop].tolist(), forest.j[added:stop].tolist()))
        added = max(added, stop)
        return [np.array(sorted(c), dtype=np.int64) for c in nx.connected_components(graph)]
    return components


def _python_components(n: int, forest: Edges) -> Callable[[int], list[np.ndarray]]:
    """As :func:`_networkx_components`, by a union-find (small inputs: see SMALL_FILES)."""
    parent = list(range(n))
    ii, jj = forest.i.tolist(), forest.j.tolist()
    added = 0

    def components(stop: int) -> list[np.ndarray]:
        nonlocal added
        for k in range(added, stop):
            ra, rb = find_root(parent, ii[k]), find_root(parent, jj[k])
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
        added = max(added, stop)
        groups: dict[int, list[int]] = {}
        for x in range(n):  # ascending: each component's members come out sorted
            groups.setdefault(find_root(parent, x), []).append(x)
        return [np.array(g, dtype=np.int64) for g in groups.values() if len(g) > 1]
    return components


def _scipy_components(n: int, forest: Edges) -> Callable[[int], list[np.ndarray]]:
    """As :func:`_networkx_components`, by scipy's C connected components."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    def components(stop: int) -> list[np.ndarray]:
        g = coo_matrix((np.ones(stop, dtype=np.int8), (forest.i[:stop], forest.j[:stop])), shape=(n, n))
        _, labels = connected_components(g, directed=False)
        sizes = np.bincount(labels)
        # only components of 2+ files, sliced from one sorted array: np.split of every
        # singleton took 6 s per 20 thresholds at 100,000 files
        members = np.flatnonzero(sizes[labels] > 1)
        members = members[np.argsort(labels[members], kind="stable")]  # a component's members stay in index order
        ends = np.cumsum(sizes[sizes > 1]).tolist()
        return [members[a:b] for a, b in zip([0] + ends[:-1], ends)]
    return components


def make_partition(n: int, t: int, comps: list[np.ndarray], changed: bool = True) -> Partition:
    """A Partition of ``n`` files from its clusters (each sorted): ordered largest first,
    ties by the first member (files are in path order), so output is deterministic."""
    comps.sort(key=lambda c: (-len(c), int(c[0])))
    mask = np.ones(n, dtype=bool)
    for c in comps:
        mask[c] = False
    return Partition(t, comps, np.flatnonzero(mask), changed)
