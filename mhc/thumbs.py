"""Thumbnails for the report: made once per file, kept in ``<out>/.mhc/thumbs``.

A thumbnail is named by the file's identity (path, size, mtime), so every later run finds
it until the file changes; the folder moves with the output from run to run.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import multiprocessing
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from pathlib import Path

from PIL import Image

from .decode import DecodeError, DecodeSettings, access_reason, open_image
from .discover import classify
from .errors import printable
from .events import Progress, report
from .identity import inodes_made_up
from .ownership import _THUMB
from .thumbmarks import THUMB_DIR, THUMB_MARK, broken, check_left_thumbs, is_ours, mark_making
from .pool import MIN_FILES_FOR_POOL, how_it_ended, in_pools, pool_size, start_method, time_limit, worker_init
from .video import VIDEO_VERSION, VideoSettings, sample_frames

log = logging.getLogger(__name__)

THUMB_SIDE = 200


def thumb_name(path: str, st: os.stat_result | None = None, *, made_up: bool | None = None) -> str | None:
    """File name of ``path``'s thumbnail, from its file's identity (inode, size, mtime;
    ``st``: its stat, if known), so a renamed or moved file, and every hard link of it, keeps
    one thumbnail; on a filesystem without inode numbers, or that makes them up at each mount
    (``made_up``, if known: see :func:`~mhc.identity.inodes_made_up`), from its path. None if
    the file is gone."""
    try:
        st = st or os.stat(path)
    except OSError:
        return None
    if not st.st_ino or (inodes_made_up(path) if made_up is None else made_up):
        return _path_thumb_name(path, st)
    # Not the device number, though inode numbers are unique only within one filesystem: a
    # USB disk or a loop device gets another number when mounted again (disks plugged in
    # another order), and then a rerun with one new file made every thumbnail again (a second
    # decode of the whole collection). Two files of two filesystems would share a thumbnail
    # only with the same inode, size and mtime to the nanosecond.
    return _named(f"inode|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}".encode(), path)


def thumb_target(tdir: str, path: str) -> str | None:
    """Where ``path``'s thumbnail is made in ``tdir``; None if the file is gone or has one
    there already (under its name or an older one: see :func:`_older_names`)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    made_up = inodes_made_up(path)  # (once for both names)
    name = os.path.join(tdir, thumb_name(path, st, made_up=made_up))
    if os.path.exists(name) or any(os.path.exists(os.path.join(tdir, n)) for n in _older_names(path, st, made_up)):
        return None
    return name


def _older_names(path: str, st: os.stat_result, made_up: bool | None = None) -> tuple[str, ...]:
    """The names older mhc gave ``path``'s thumbnail (those it made are still used): with the
    device number (up to 0.2.0), and by path, size and mtime (before the inode named them).
    None where inode numbers are made up: a name by inode there may be another file's."""
    if inodes_made_up(path) if made_up is None else made_up:
        return ()
    return (_named(f"inode|{st.st_dev}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}".encode(), path),
            _path_thumb_name(path, st))


def _path_thumb_name(path: str, st: os.stat_result) -> str:
    return _named(os.fsencode(path) + f"|{st.st_size}|{st.st_mtime_ns}".encode(), path)


def _named(key: bytes, path: str) -> str:
    if classify(path) == "video":  # a video's frames changed with VIDEO_VERSION (turned upright in 2)
        key += f"|v{VIDEO_VERSION}".encode()
    return hashlib.sha1(key).hexdigest()[:20] + ".jpg"


def save_thumb(im: Image.Image, dest: str) -> None:
    """A small JPEG of a decoded image, written whole or not at all."""
    w, h = im.size
    k = min(1.0, THUMB_SIDE / max(w, h))
    # reducing_gap: a box reduction by a whole factor first, then Lanczos over the rest:
    # 1.3 ms instead of 3.2 ms from the 500x375 draft of a 12 MP photo, within one grey
    # level of Lanczos over all of it (a tenth of the hashing work per file, saved)
    im = im.resize((max(1, round(w * k)), max(1, round(h * k))), Image.LANCZOS, reducing_gap=1.0)
    tmp = dest + ".tmp"
    mark_making(os.path.dirname(dest))
    im.convert("RGB").save(tmp, "JPEG", quality=80, comment=THUMB_MARK)
    os.replace(tmp, dest)


def make_thumb(path: str, dest: str, kind: str = "image") -> str | None:
    """Write a small JPEG of ``path`` (as a viewer shows it; a video's middle frame) to
    ``dest``. Returns None when it is made, else why not (the file's reason, as a run's
    errors give it: hashed from the cache, it may not be readable now)."""
    try:
        if kind == "video":
            im = sample_frames(path, VideoSettings(frames=1, min_side=THUMB_SIDE), color=True).frames[0]
        else:
            im = open_image(path, DecodeSettings(min_side=THUMB_SIDE, color=True))
    except DecodeError as e:
        return str(e)
    except IndexError:
        return "no frame could be decoded"
    except OSError as e:
        return access_reason(e)
    try:
        save_thumb(im, dest)
    except OSError as e:
        return f"cannot write it ({e.strerror or e})"
    return None


def _make_batch(jobs: list[tuple[str, str, str]], timeout: float | None = None) -> list[str | None]:
    out = []
    for p, d, k in jobs:
        with time_limit(timeout):  # (in a pool's worker only: see mhc.pool.time_limit)
            out.append(make_thumb(p, d, k))
    return out


def ensure_thumbs(files: list[str], home: Path, *, kinds: list[str] | None = None, workers: int = 0,
                  executor: Executor | None = None, progress: Progress | None = None,
                  recorded: list[str | None] | None = None,
                  donors: Callable[[], list[tuple[Path, set[str]]]] | None = None,
                  file_timeout: float | None = 300.0) -> dict[str, str]:
    """Thumbnails for ``files`` under ``home/.mhc/thumbs``, made where missing (on
    ``executor``, or a local pool of ``workers`` when there are many). ``recorded``: each
    file's thumbnail name as summary.json recorded it, used for a file that cannot be
    reached now (its input moved or unmounted: the name comes from the file's identity).
    ``donors``: called when thumbnails are missing, the thumbnail folders of other outputs
    (:func:`thumb_donors`), where they are taken from (linked, else copied) before any is made.
    ``file_timeout``: seconds per file in a pool's worker (see :func:`mhc.runner.run_batches`).
    Returns path -> thumbnail path relative to the output folder."""
    tdir = home / THUMB_DIR
    tdir.mkdir(parents=True, exist_ok=True)
    check_left_thumbs(tdir)
    found: dict[str, str] = {}
    todo: list[tuple[str, str, str]] = []
    have = set(os.listdir(tdir))
    # hard links share a name (a tree of hard-linked backup snapshots made each thumbnail
    # once per snapshot): made once, for the first
    queued: dict[str, str] = {}  # thumbnail name -> the file it is made from
    made_up: dict[int, bool] = {}  # device -> its inode numbers are made up at each mount
    same: dict[str, str] = {}
    for i, (p, kind) in enumerate(zip(files, kinds or ["image"] * len(files))):
        try:
            st = os.stat(p)
        except OSError:
            if recorded and recorded[i] in have:
                found[p] = str(THUMB_DIR / recorded[i])
            continue
        if st.st_dev not in made_up:  # (one statfs per filesystem, not per file)
            made_up[st.st_dev] = inodes_made_up(p)
        name = thumb_name(p, st, made_up=made_up[st.st_dev])
        if name in have:
            found[p] = str(THUMB_DIR / name)
        elif older := next((n for n in _older_names(p, st, made_up[st.st_dev]) if n in have), None):  # (if missing)
            found[p] = str(THUMB_DIR / older)
        elif name in queued:
            same[p] = queued[name]
        else:
            queued[name] = p
            todo.append((p, str(tdir / name), kind))
    if todo and donors is not None:
        todo = _take_from(donors(), todo, found, made_up)
    batches = [todo[i:i + 16] for i in range(0, len(todo), 16)]
    processes = pool_size(workers, len(batches))
    if executor is not None:
        results = zip(batches, executor.map(_make_batch, batches))
    elif len(todo) >= MIN_FILES_FOR_POOL or any(kind == "video" for _, _, kind in todo):
        # (one worker too, and any video: a decoder's crash or hang costs its thumbnail)
        # a pool only when there is enough to make: most reruns find every thumbnail
        results = in_pools(functools.partial(_make_batch, timeout=file_timeout), batches, processes, None, processes,
                           functools.partial(_alone, timeout=file_timeout))
    else:
        results = ((b, _make_batch(b)) for b in batches)
    done = 0
    failed: dict[str, str] = {}
    for batch, reasons in results:
        for (p, dest, _), why in zip(batch, reasons):
            if why is None:
                found[p] = str(THUMB_DIR / os.path.basename(dest))
            elif why is not DIED:  # (a process that died: said by _alone)
                failed[p] = why
        done += len(batch)
        report(progress, "thumbnails", done, len(todo))
    if failed:  # files hashed from the cache that cannot be read now (a disk failing, a permission changed)
        p, why = next(iter(failed.items()))
        log.warning("%d file(s) have no thumbnail (the report shows \"no preview\"), e.g. %s: %s", len(failed),
                    printable(p), why)
    for p, q in same.items():
        if q in found:
            found[p] = found[q]
    return found


DONOR_WAIT = 5.0  # seconds for looking at the other outputs: one on a share that stopped answering is passed over


def thumb_donors(cache: str | None, out: str | Path, input: str | None = None) -> list[tuple[Path, set[str]]]:
    """The thumbnail folders of the other outputs made with the hash cache ``cache`` (most
    recent first), each with the names it holds: a new output (or one whose thumbnails were
    removed) takes them from there instead of decoding every file again (a 12 MP photo:
    ~15 ms). ``input``: the output's input (a cache inside it is read without SQLite's -shm
    file: nothing is written there; an output inside it gives nothing)."""
    if not cache or not os.path.exists(cache):
        return []
    from .cache import HashCache
    from .paths import inside

    try:
        untouched = input is not None and inside(Path(cache), Path(input))
        with HashCache(cache, readonly=True, untouched=untouched, quiet=True) as c:
            outputs = c.outputs()
    except Exception:  # noqa: BLE001 - a cache that cannot be read gives no donors, and nothing else
        return []
    here = os.path.realpath(out)
    seen: dict[int, tuple[Path, set[str]]] = {}

    def look(k: int, o: str) -> None:
        try:
            # not an output inside the input (an older run's, kept among the photos): a hard
            # link to its thumbnail would change that file's link count and ctime
            if os.path.realpath(o) != here and not (input is not None and inside(Path(o), Path(input))):
                seen[k] = (Path(o) / THUMB_DIR, set(os.listdir(Path(o) / THUMB_DIR)))
        except OSError:
            pass

    # The outputs are paths of earlier runs, perhaps on a share that no longer answers (a
    # hard NFS mount blocks every stat): each is looked at in a thread of its own, and none
    # is waited for past DONOR_WAIT (those not seen by then give nothing).
    threads = [threading.Thread(target=look, args=(k, o), name="mhc thumbnail donor", daemon=True)
               for k, o in enumerate(outputs)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + DONOR_WAIT
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        log.info("passed over outputs that did not answer within %.0f s for their thumbnails", DONOR_WAIT)
    return [seen[k] for k in sorted(dict(seen))]  # (most recent first; a copy: late threads may still add)


def _take_from(donors: list[tuple[Path, set[str]]], todo: list[tuple[str, str, str]], found: dict[str, str],
               made_up: dict[int, bool]) -> list:
    """Thumbnails of ``todo`` that a donor folder holds, linked into place (else copied),
    recorded in ``found``; returns the rest of ``todo``. Only files mhc provably made are
    taken (named as it names them, holding its mark), under their name or an older one.
    ``made_up``: device -> inode numbers made up (as :func:`ensure_thumbs` found them)."""
    rest = []
    for job in todo:
        p, dest, _ = job
        try:
            st = os.stat(p)
        except OSError:
            rest.append(job)
            continue
        names = (os.path.basename(dest), *_older_names(p, st, made_up.get(st.st_dev)))
        src = next((d / n for d, have in donors for n in names if n in have and is_ours(d / n) and not broken(str(d / n))), None)
        if src is None or not _place(src, dest):
            rest.append(job)
            continue
        found[p] = str(THUMB_DIR / os.path.basename(dest))
    if len(rest) < len(todo):
        log.info("%d thumbnails taken from other outputs of the same cache", len(todo) - len(rest))
    return rest


def _place(src: Path, dest: str) -> bool:
    """``src`` at ``dest``: a hard link (no room taken; each output removes its own name
    only), else a copy written whole."""
    try:
        mark_making(os.path.dirname(dest))
        os.link(src, dest)
        return True
    except FileExistsError:
        return True
    except OSError:
        pass
    tmp = dest + ".tmp"
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
        return True
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False


def prune_thumbs(home: Path, keep: Iterable[str]) -> int:
    """Remove from ``home/.mhc/thumbs`` the thumbnails not named in ``keep`` (those of files
    changed, moved out of the input or deleted since they were made: the folder grew with
    every edit), and half-written ones a killed worker left. Only files mhc provably made
    go: named as it names them, holding its :data:`THUMB_MARK`; older thumbnails, made
    before the mark, stay. Returns how many were removed."""
    tdir = home / THUMB_DIR
    keep = set(keep)
    removed = 0
    try:
        entries = list(os.scandir(tdir))
    except OSError:
        return 0
    for e in entries:
        if e.name in keep or not _THUMB.match(e.name) or not e.is_file(follow_symlinks=False):
            continue
        try:
            if is_ours(Path(e.path)):
                os.unlink(e.path)
                removed += 1
        except OSError:  # (a read-only output: they stay)
            continue
    if removed:
        log.info("removed %d thumbnails of files no longer in the input (or changed)", removed)
    return removed


DIED = "the process making it died"  # (_alone's answer: said by its own line)


def _alone(job: tuple[str, str, str], timeout: float | None = None) -> str | None:
    """One thumbnail in a process of its own: if it dies, only this one is missing."""
    ctx = multiprocessing.get_context(start_method())
    reader, writer = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_one, args=(*job, timeout, writer), daemon=True)
    proc.start()
    writer.close()
    try:
        why = reader.recv() if reader.poll(None) else DIED  # (the pipe closes with the process: EOF)
    except EOFError:
        why = DIED
    finally:
        reader.close()
    proc.join()
    if proc.exitcode == 0:
        return why
    if timeout and proc.exitcode == -signal.SIGALRM:  # (0: no limit was set)
        log.warning("no thumbnail for %s: decoding it took longer than %g s (--file-timeout); the report shows "
                    "\"no preview\"", job[0], timeout)
    else:
        log.warning("no thumbnail for %s: the process making it died (%s); the report shows \"no preview\"",
                    job[0], how_it_ended(proc.exitcode))
    return DIED


def _one(path: str, dest: str, kind: str, timeout: float | None, answer) -> None:
    worker_init()
    with time_limit(timeout):
        why = make_thumb(path, dest, kind)
    answer.send(why)
