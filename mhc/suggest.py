"""Which folder to open first: per algorithm a threshold, and across the run one folder.

Per algorithm (:func:`suggest_threshold`): copies of one picture hold together over a wide
range of distances, while unrelated pictures join them only later and one by one. mhc
reads that from the single-linkage hierarchy of the joins, as HDBSCAN does: it selects the
clusters that persist longest (the "excess of mass" of each cluster over distance, on a
log scale of distance), then suggests the threshold whose clusters match them best (pairwise
F1), and never a threshold past the *chaining onset*, the first threshold at which the
largest cluster grows by absorbing another cluster rather than single files. Measured on
five labelled corpora (docs/benchmarks.md), the suggested folder's F1 is within a few
hundredths of the best folder's for every algorithm; an earlier model (a bell fitted to
unrelated distances, < 1 chance link expected) missed by up to 0.87 on small or look-alike-
rich collections, where the bell is not the whole story.

Across algorithms: each algorithm's own suggested folder is a noisy vote on which pairs of
files are copies; votes are weighted by how well each agrees with the weighted whole (a few
rounds). :func:`agree` then moves each algorithm's suggestion to its folder that agrees best
with that vote (its own choice is kept as ``own``): one algorithm's structure is misread more
often than the common ground of several. :func:`recommend` names the folder of the whole run
that agrees best: the one to open first.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from .pairs import Edges
from .sweep import Partition, find_root


MIN_FILES = 3  # fewer files: no suggestion (the terminal and the report say so)


@dataclass(frozen=True)
class Suggestion:
    threshold: int
    persistent: int  # threshold whose clusters best match the most persistent ones
    chaining: int | None  # first threshold where clusters merge with each other (None: not within the sweep)
    largest_before: int  # largest cluster at the suggestion
    largest_after: int  # ... and at the chaining threshold
    top_of_range: bool  # the suggestion is the last threshold of the sweep
    explanation: str
    own: int | None = None  # set by agree(): the algorithm's own choice, before the vote of all algorithms
    agreement: float | None = None  # ... and the suggested folder's agreement with that vote (0-1)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Recommendation:
    key: str  # the algorithm folder
    threshold: int
    agreement: float  # expected F1 against the weighted vote of all suggestions (0-1)
    explanation: str

    def to_dict(self) -> dict:
        return asdict(self)


def labels_of(p: Partition, n: int) -> np.ndarray:
    """Cluster label per file (-1: unclustered)."""
    lab = np.full(n, -1, dtype=np.int64)
    for k, c in enumerate(p.clusters):
        lab[c] = k
    return lab


def _pairs(counts: np.ndarray) -> int:
    counts = counts.astype(np.int64)
    return int((counts * (counts - 1) // 2).sum())


def co_clustered(a: np.ndarray, b: np.ndarray) -> int:
    """Pairs of files clustered together in both labelings (-1 = alone): O(n)."""
    m = (a >= 0) & (b >= 0)
    if not m.any():
        return 0
    key = a[m] * (int(b.max()) + 1) + b[m]
    return _pairs(np.unique(key, return_counts=True)[1])


def pair_count(lab: np.ndarray) -> int:
    lab = lab[lab >= 0]
    return _pairs(np.unique(lab, return_counts=True)[1]) if len(lab) else 0


def pair_f1(a: np.ndarray, b: np.ndarray) -> float:
    both, pa, pb = co_clustered(a, b), pair_count(a), pair_count(b)
    if pa + pb == 0:
        return 1.0
    return 2 * both / (pa + pb)


# -- the persistent clusters ----------------------------------------------------------------
def persistent_clusters(n: int, joins: Edges, top: float, min_size: int = 2) -> np.ndarray:
    """Labels of the clusters an excess-of-mass selection keeps from the single-linkage
    hierarchy of ``joins`` (HDBSCAN's selection with min_samples=1, λ = -log(d + 1)), below a
    virtual root at ``top`` that joins the components the sweep leaves apart."""
    order = np.argsort(joins.d, kind="stable")
    ji, jj, jd = joins.i[order].tolist(), joins.j[order].tolist(), joins.d[order].astype(float)
    m = len(jd)
    # Python lists, not numpy arrays: the loops below read and write single items, which
    # costs ~5x more on an array (100,000 files: 0.9 s -> 0.3 s)
    parent = list(range(n))
    node = list(range(n))  # union-find root -> dendrogram node (leaves 0..n-1, merges n..n+m-1)
    left = [0] * m
    right = [0] * m
    size = [1] * (n + m)

    for k in range(m):
        ri, rj = find_root(parent, ji[k]), find_root(parent, jj[k])
        left[k], right[k] = node[ri], node[rj]
        size[n + k] = size[node[ri]] + size[node[rj]]
        parent[rj] = ri
        node[ri] = n + k

    # Persistence is measured on a log scale of distance, λ = -log(d + 1): holding together from
    # 0 to 2 bits counts as much as from 2 to 8, so neither identical copies (HDBSCAN's λ = 1/d
    # favours them: distance 0 is infinitely dense) nor long chains (a linear scale favours
    # them) win by the scale alone. Measured against 1/(d+1), sqrt and linear scales on five
    # labelled corpora: the only one within 0.03 of the best folder for every algorithm of the
    # default set and image-clustering's on all image corpora (docs/benchmarks.md).
    lam = (-np.log(jd + 1.0)).tolist()
    lam_top = -np.log(float(top) + 1.0)
    labels = np.full(n, -1, dtype=np.int64)
    roots = {node[find_root(parent, x)] for x in range(n)}
    next_label = 0
    for r in roots:
        if size[r] < min_size or r < n:
            continue
        for members in _select(r, n, left, right, size, lam, lam_top, min_size):
            labels[members] = next_label
            next_label += 1
    return labels


def _leaves(v: int, n: int, left, right) -> list[int]:
    out, stack = [], [v]
    while stack:
        x = stack.pop()
        if x < n:
            out.append(x)
        else:
            stack += (left[x - n], right[x - n])
    return out


def _select(root: int, n: int, left, right, size, lam, lam_top, min_size) -> list[list[int]]:
    """Excess-of-mass selection below one root, iteratively (no recursion limit at 1M files).
    A cluster's stability is the sum over its points of (λ when the point leaves − λ at the
    cluster's birth); a cluster is kept if it is more stable than its selected descendants."""
    # condensed clusters: (dendrogram node where the cluster starts, birth λ, parent cluster id)
    clusters = [(root, lam_top, -1)]
    stability = [0.0]
    children: list[list[int]] = [[]]
    k = 0
    while k < len(clusters):
        start, birth, _ = clusters[k]
        cur = start
        while True:
            if cur < n:  # a cluster that is one point from the start (not reached: min_size >= 2)
                break
            a, b = left[cur - n], right[cur - n]
            lev = lam[cur - n]
            if size[a] >= min_size and size[b] >= min_size:  # a true split: every point leaves here
                stability[k] += (lev - birth) * size[cur]
                for child in (a, b):
                    children[k].append(len(clusters))
                    clusters.append((child, lev, k))
                    stability.append(0.0)
                    children.append([])
                break
            small, big = (a, b) if size[a] < size[b] else (b, a)
            stability[k] += (lev - birth) * size[small]  # points falling out of the cluster here
            if size[big] < min_size:  # the cluster is gone: its last points leave here too
                stability[k] += (lev - birth) * size[big]
                break
            cur = big
        k += 1
    # bottom-up: keep a cluster or the best of its descendants. The root here is a component
    # at the top of the sweep, itself a child of the virtual root above all: selectable
    best = [0.0] * len(clusters)
    keep = [False] * len(clusters)
    for c in range(len(clusters) - 1, -1, -1):
        below = sum(best[d] for d in children[c])
        keep[c] = stability[c] >= below
        best[c] = stability[c] if keep[c] else below
    # top-down: the kept clusters with no kept ancestor (no list copied per node: at 100,000
    # files copying the chosen lists up the tree took seconds)
    chosen, stack = [], [0]
    while stack:
        c = stack.pop()
        if keep[c]:
            chosen.append(c)
        else:
            stack += children[c]
    return [_leaves(clusters[c][0], n, left, right) for c in sorted(chosen)]


def _counted(k: int, noun: str) -> str:
    return f"{k} {noun}" if k == 1 else f"{k} {noun}s"


# -- per algorithm -----------------------------------------------------------------------------
def chaining_onset(partitions: list[Partition]) -> int | None:
    """Index of the first threshold at which the largest cluster grows by more than the
    files newly clustered there: it absorbed another cluster (None: never in the sweep)."""
    for k in range(1, len(partitions)):
        a, b = partitions[k - 1], partitions[k]
        if b.largest > a.largest and b.largest - a.largest > b.clustered_files - a.clustered_files:
            return k
    return None


def suggest_threshold(n: int, joins: Edges, partitions: list[Partition], unit: str = "bits") -> Suggestion | None:
    """The threshold to open first for one clustering (None: fewer than 3 files)."""
    if n < MIN_FILES or not partitions:
        return None
    ts = [p.threshold for p in partitions]
    u = "%" if unit == "%" else " bits"
    if not partitions[-1].clusters:  # every folder the same: said as such, not as "0 clusters" that "hold together"
        return Suggestion(ts[0], ts[0], None, 0, 0, False,
                          f"No two files are within {ts[-1]}{u} of each other (the top of the sweep): every folder "
                          f"holds only unclustered files. Copies further apart would need a longer -t range.")
    step = ts[1] - ts[0] if len(ts) > 1 else 1
    ref = persistent_clusters(n, joins.within(ts[-1]), ts[-1] + step)
    scores = [pair_f1(labels_of(p, n), ref) for p in partitions]
    persist = int(np.argmax(scores))
    onset = chaining_onset(partitions)
    k = persist if onset is None else min(persist, onset - 1)
    while k > 0 and not partitions[k].changed:
        # the lowest threshold of the same clusters: the one folder --changed-only writes (a
        # suggestion just below the onset was often one it never made)
        k -= 1
    t = ts[k]
    at = partitions[k]
    top = k == len(ts) - 1
    text = (f"At {t}{u} the clusters match the groups that hold together over the widest range of distances "
            f"({_counted(len(at.clusters), 'cluster')}, {at.clustered_files} files, the largest {at.largest}).")
    if onset is not None:
        after = partitions[onset]
        text += (f" From {after.threshold}{u} on, clusters start merging with each other: the largest grows from "
                 f"{partitions[onset - 1].largest} to {after.largest} files.")
    elif top:
        text += " It is the top of the sweep: clusters may still be growing above it; try a longer -t range."
    return Suggestion(t, ts[persist], ts[onset] if onset is not None else None, at.largest,
                      partitions[onset].largest if onset is not None else at.largest, top, text)


# -- across the run ------------------------------------------------------------------------------
class _Vote:
    """Each suggested folder is a noisy vote on which pairs of files are copies. Votes are
    weighted by their expected pairwise F1 against the weighted whole (a few rounds, so an
    algorithm that disagrees with all others counts little); a folder's *agreement* is its
    expected pairwise F1 against that weighted vote. Cost O(files) per folder."""

    def __init__(self, votes: list[np.ndarray], rounds: int = 5):
        self.votes = votes
        w = np.ones(len(votes))
        pc = np.array([pair_count(v) for v in votes], dtype=float)
        both = np.array([[co_clustered(a, b) if i != j else pc[i] for j, b in enumerate(votes)]
                         for i, a in enumerate(votes)], dtype=float)
        for _ in range(rounds):
            tt = (w * pc).sum() / w.sum()
            tp = both @ w / w.sum()
            w = np.where(pc + tt > 0, 2 * tp / np.maximum(pc + tt, 1e-9), 0.0) + 1e-9
        self.w = w
        self.tt = (w * pc).sum() / w.sum()
        self._scores: dict[int, tuple[Partition, float]] = {}  # id(partition) -> (it, agreement)

    def agreement(self, lab: np.ndarray) -> float:
        tp = sum(wk * co_clustered(lab, v) for wk, v in zip(self.w, self.votes)) / self.w.sum()
        pp = pair_count(lab)
        return float(2 * tp / (pp + self.tt)) if pp + self.tt > 0 else 0.0

    def score(self, p: Partition, n: int) -> float:
        """:meth:`agreement` of a partition, computed once per partition (agree() and
        recommend() score the same folders; the partition is kept so its id stays its own)."""
        if id(p) not in self._scores:
            self._scores[id(p)] = (p, self.agreement(labels_of(p, n)))
        return self._scores[id(p)][1]


def _voters(clusterings: list) -> list:
    return [c for c in clusterings if c.suggestion is not None]


def _own_votes(voters: list, n: int) -> _Vote:
    # the algorithms' own choices vote, also after agree() replaced the suggestions
    return _Vote([labels_of(c.partition(c.suggestion.threshold if c.suggestion.own is None else c.suggestion.own), n)
                  for c in voters])


def settle(clusterings: list, n: int) -> Recommendation | None:
    """:func:`agree`, its suggestions put in place, then :func:`recommend`: one vote and one
    score per folder serve both (each costs O(files) per folder and algorithm)."""
    voters = _voters(clusterings)
    vote = _own_votes(voters, n) if len(voters) > 1 else None
    refined = agree(clusterings, n, vote=vote)
    for c in clusterings:
        c.suggestion = refined.get(c.key, c.suggestion)
    return recommend(clusterings, n, vote=vote)


def agree(clusterings: list, n: int, min_voters: int = 3, max_partitions: int = 2000,
          vote: _Vote | None = None) -> dict[str, Suggestion]:
    """With three algorithms or more (``min_voters``): per algorithm, its folder that agrees
    best with the weighted vote of all algorithms' own suggestions (see :class:`_Vote`), as a new
    :class:`Suggestion` whose ``own`` keeps the algorithm's own choice. Measured on six
    labelled corpora (docs/benchmarks.md), this moves each algorithm's suggestion closer to
    its best folder: one algorithm's structure can be misread (a wide bell, few copies), the
    common ground of five rarely is. With two it harms more than it helps (480 random pairs
    of algorithms: 26 suggestions moved more than 0.03 further from the best folder's F1, 7
    closer), so each keeps its own choice (returns {}); from three on it helps (720 random
    triples: 32 closer, 24 further; with the default five and the preset's fourteen, no
    suggestion on a photo corpus more than 0.03 below the best folder)."""
    voters = _voters(clusterings)
    if len(voters) < min_voters:
        return {}
    vote = vote or _own_votes(voters, n)
    if not vote.tt:  # no suggested folder holds a cluster: nothing to agree on
        return {}
    out = {}
    for c in voters:
        s = c.suggestion
        if len(c.partitions) > max_partitions:  # a huge sweep: keep its own choice
            continue
        scores = [vote.score(p, n) for p in c.partitions]
        k = int(np.argmax(scores))
        t = c.partitions[k].threshold
        u = "%" if c.unit == "%" else " bits"
        if t == s.threshold:
            text = (f"{s.explanation} The {len(voters)} algorithms of this run agree: of {c.key}'s folders this one "
                    f"matches best what their suggestions have in common (agreement {scores[k]:.2f} of 1).")
        else:
            many = _counted(len(c.partitions[k].clusters), "cluster")
            text = (f"At {t}{u} {c.key}'s clusters match best what the {len(voters)} algorithms' suggestions have in "
                    f"common (agreement {scores[k]:.2f} of 1; {many}, the largest "
                    f"{c.partitions[k].largest}). On its own, {c.key} would suggest {s.threshold}{u}: {s.explanation}")
        out[c.key] = replace(s, threshold=t, own=s.threshold, agreement=round(scores[k], 3),
                             largest_before=c.partitions[k].largest,
                             top_of_range=k == len(c.partitions) - 1, explanation=text)
    return out


def recommend(clusterings: list, n: int, max_candidates: int = 2000,
              vote: _Vote | None = None) -> Recommendation | None:
    """The folder to open first among ``clusterings`` (each with ``key``, ``partitions`` and
    ``suggestion``, the algorithm's own): the highest agreement with the weighted vote of all
    suggested folders (see :class:`_Vote`)."""
    voters = _voters(clusterings)
    if not voters:
        return None
    if len(voters) == 1:
        c = voters[0]
        return Recommendation(c.key, c.suggestion.threshold, 1.0, f"{c.key} is the only algorithm of this run "
                              f"with a suggestion; open its suggested folder.")
    vote = vote or _own_votes(voters, n)
    if not vote.tt:  # every agreement would be 0: the first would "agree best" with nothing
        c = voters[0]
        return Recommendation(c.key, c.suggestion.threshold, 0.0,
                              f"None of the {len(voters)} algorithms' suggested folders holds a cluster: no copies "
                              f"were found there, and {c.key} at {c.suggestion.threshold} shows every file "
                              f"unclustered.")
    cands = [(c, p) for c in voters for p in c.partitions]
    if len(cands) > max_candidates:  # huge sweeps: the suggested folders only
        cands = [(c, c.partition(c.suggestion.threshold)) for c in voters]
    best = None
    for c, p in cands:
        e = vote.score(p, n)
        if best is None or e > best[0] + 1e-12:
            best = (e, c, p)
    e, c, p = best
    return Recommendation(c.key, p.threshold, round(float(e), 3),
                          f"Open {c.key} at {p.threshold} first: of every folder of this run, its clusters agree best "
                          f"with what the {len(voters)} algorithms' suggested folders have in common (each weighted "
                          f"by how well it agrees with the others; agreement {e:.2f} of 1).")
