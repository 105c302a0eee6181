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
# before it sweeps.

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


def _msf(n: int, edges: Edges) -> Edges:
    if not len(edges):
        return edges
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


NX_MAX_EDGES = 20_000


def sweep(n: int, forest: Edges, thresholds: Iterable[int], *, engine: str = "auto") -> Iterator[Partition]:
    """Partition ``n`` files at each threshold (ascending) using a spanning forest
    (or any edge set whose components match the full graph's).

    Components come from networkx over the edges within the threshold, added
    incrementally. Past NX_MAX_EDGES forest edges, scipy's C connected components take
    over (the same components; networkx spends ~1 GB and minutes per threshold on a
    million-node forest, scipy 0.1 s; at 100,000 files and 50,000 edges networkx took 3 s
    over a 20-threshold sweep, scipy 0.6 s): tests check both agree. ``engine``: "auto",
    "networkx" or "scipy".
    """
    forest = forest.sorted()
    use_scipy = engine == "scipy" or (engine == "auto" and len(forest) > NX_MAX_EDGES)
    components = _scipy_components(n, forest) if use_scipy else _networkx_components(forest)
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
