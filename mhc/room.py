"""The disk space a tree of copies (``--link copy``) needs: each file once per threshold folder."""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .errors import EnvironmentFault
from .sweep import Partition


def copies_needed(folders: Iterable[tuple[Partition, bool]], sizes: list[int]) -> tuple[int, int]:
    """Bytes and files that --link copy writes for these threshold folders, each given with
    whether its unclustered files are copied too: each file once per folder."""
    size = np.asarray(sizes, dtype=np.int64)
    every = int(size.sum())
    need, copies = 0, 0
    for part, unclustered in folders:
        if unclustered:  # every file, once
            need, copies = need + every, copies + len(size)
        elif part.clusters:  # (one concatenation per folder: a loop over 100,000 clusters took seconds)
            members = np.concatenate(part.clusters)
            need, copies = need + int(size[members].sum()), copies + len(members)
    return need, copies


FEWER_COPIES = "use symlinks (the default), fewer thresholds (-t), or --no-unclustered-links"  # a tree too large


def amount(n: int) -> str:
    """Bytes as people read them: 12.1 MB, 3.4 GB."""
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.1f} MB"


def free_space(folder: Path) -> tuple[Path, int]:
    """The nearest existing folder at or above ``folder``, and the bytes free there."""
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    st = os.statvfs(folder)
    return folder, st.f_bavail * st.f_frsize


def check_room_for_copies(staging: Path, folders: Iterable[tuple[Partition, bool]], sizes: list[int]) -> None:
    """--link copy holds each file once per threshold folder (``folders``: the ones to
    write in copies, as for :func:`copies_needed`): refuse, before the first copy, a tree
    the disk cannot hold (it filled the disk after an hour of copying, then was thrown
    away). Kept folders are moved, not copied, and cost nothing."""
    need, copies = copies_needed(folders, sizes)
    if not need:
        return
    _, free = free_space(staging)
    if need > free:
        raise EnvironmentFault(f"--link copy would copy {amount(need)} ({copies} copies: each file once per threshold "
                               f"folder) and {staging.parent} has {amount(free)} free; {FEWER_COPIES}")
