"""Checks of the paths a user gives, before any work: the input, the output folder, and
any path's length. Each refusal is one line that says what to do instead."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .discover import MARKER, STAGING_INFIX, enclosing_output
from .errors import EnvironmentFault, MhcError, UsageError, printable

_NAME_MAX = 255
# ".<name>.mhc-staging-<pid>": the longest sibling mhc makes beside the output
_SIBLING_EXTRA = len(".") + len(STAGING_INFIX) + 10

_PATH_MAX = 4096


def check_path(flag: str, path: Path) -> None:
    """Refuse a path the user gave that no filesystem here can hold: a name over 255 bytes or
    a path over 4096 (Linux's limits, and most others'). Looked at first: every os.stat of it
    would raise ENAMETOOLONG, wherever that happens to be."""
    full = os.fsencode(os.path.abspath(path))
    longest = max(full.split(b"/"), key=len)
    if len(longest) > _NAME_MAX:
        raise UsageError(f"{flag} {printable(str(path))}: a name in it is {len(longest)} bytes long, and a file or "
                         f"folder name may have at most {_NAME_MAX}; give a shorter one")
    if len(full) >= _PATH_MAX:
        raise UsageError(f"{flag}: the path is {len(full)} bytes long, and a path may have at most {_PATH_MAX - 1}; "
                         f"give a shorter one")


def inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies in it (symlinks resolved)."""
    real, top = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return real == top or top in real.parents


def check_input(inp: Path, given: Path) -> None:
    """Refuse an input that is not a folder of media (``given``: as the user wrote it)."""
    if not inp.exists():
        raise UsageError(f"input folder {given} does not exist; pass -i/--input FOLDER with your media")
    if not inp.is_dir():
        holder = os.path.dirname(str(given)) or "."
        raise UsageError(f"input {given} is a file, not a folder; mhc scans folders: pass the one that holds it "
                         f"(-i {holder})")
    # an output, or one algorithm's folder in it, holds links to the user's files, each once
    # per threshold folder: clustered, every file would be its own duplicate. A threshold
    # or cluster folder (each file once) is a fine input: reclustering what a folder holds.
    owner = enclosing_output(inp)
    depth = len(inp.relative_to(owner).parts) if owner is not None else None
    if depth is not None and depth <= 1:
        from .summary import load

        try:
            source = (load(owner) or {}).get("input")
        except MhcError:  # a damaged summary: no example, the refusal stands
            source = None
        example = f", e.g. {printable(source)} (the one it was made from)" if isinstance(source, str) else ""
        what = "an mhc output folder" if depth == 0 else "an algorithm folder of an mhc output"
        raise UsageError(f"input {given} is {what}: it holds each of your files once per threshold folder; pass "
                         f"-i/--input the folder of your media{example}, or one threshold folder")


def check_output(out: Path, inp: Path, *, writing: bool = True, link: str | None = None) -> None:
    """Refuse an output folder that would put the user's files at risk or that mhc cannot
    write, before any work starts; ``link`` (the run's ``--link``): also one whose
    filesystem cannot hold that kind of link."""
    real = Path(os.path.realpath(out))
    rin = Path(os.path.realpath(inp))
    if real == rin:
        raise UsageError(f"--output {out} is the input folder; choose a separate folder such as data/output")
    if inside(rin, real):
        raise UsageError(f"--output {out} contains the input folder {inp}; choose a folder outside it")
    if inside(real, rin):
        if rin.parent == rin:  # -i /: every folder is inside it
            raise UsageError(f"--input {inp} is the whole filesystem, so every output folder would be inside it; "
                             f"pass -i/--input the folder of your media")
        raise UsageError(f"--output {out} is inside the input folder {inp}; mhc never writes there. Choose a "
                         f"folder outside it, e.g. {rin.parent / (rin.name + '-clusters')}")
    # the name first: exists() raises on a name longer than the filesystem allows
    if len(os.fsencode(real.name)) + _SIBLING_EXTRA > _NAME_MAX:
        raise UsageError(f"--output {out}: the folder name is too long for the temporary folder mhc makes beside "
                         f"it; use a name of at most {_NAME_MAX - _SIBLING_EXTRA} bytes")
    if real.exists() and not real.is_dir():
        raise UsageError(f"--output {out} exists and is not a folder; choose another path")
    # (an output is never inside an input: checked above). Before "not empty": a folder of an
    # output (-o out/phash_8) was "not made by mhc", which it was
    owner = enclosing_output(real.parent) if writing else None
    if owner is not None:
        raise UsageError(f"--output {out} is inside the mhc output folder {owner}; a folder there would stop "
                         f"mhc from writing that output again (it replaces only what it made). Choose a folder "
                         f"outside it, e.g. {owner.parent / real.name}, or -o {owner} to write that output again")
    if real.is_dir() and not (real / MARKER).exists():
        try:
            empty = next(real.iterdir(), None) is None
        except OSError as e:
            raise EnvironmentFault(f"cannot read --output {out} ({e.strerror})") from None
        if not empty:
            raise UsageError(f"--output {out} is not empty and was not made by mhc (no {MARKER} marker); "
                             f"choose an empty or new folder")
    if real.is_dir() and os.path.ismount(real):
        raise UsageError(f"--output {out} is a mount point; mhc replaces its output folder whole, so choose a "
                         f"folder inside it, e.g. {real / 'mhc-output'}")
    if not writing:
        return
    parent = real.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"--output {out}: {parent} is a file, not a folder; choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise EnvironmentFault(f"cannot write in {parent} (read-only or no permission); choose an --output "
                               f"where you can write")
    if link == "hardlink" and os.stat(parent).st_dev != os.stat(rin).st_dev:
        raise UsageError(f"--link hardlink needs --output on the same filesystem as the input ({out} is not); "
                         f"use --link copy, or an output folder on that filesystem")
    if link in ("symlink", "hardlink"):
        _check_links(parent, link)


def _check_links(folder: Path, link: str) -> None:
    """Refuse, before hours of hashing, an output on a filesystem that holds no links of
    that kind (a FAT or exFAT drive, some network shares): one made and removed at once
    beside it (a hard link of an empty file made for it, never of a user's file)."""
    from .links import no_links

    probe = folder / f".mhc-{link}-probe-{os.getpid()}"
    target = folder / f"{probe.name}.file"  # (the hard link's: an empty file of mhc's own)
    made: list[Path] = []  # only these are removed: a name that was there already is not mhc's
    try:
        if link == "symlink":
            os.symlink("mhc", probe)
        else:
            target.touch(exist_ok=False)
            made.append(target)
            os.link(target, probe)
        made.append(probe)
    except OSError as e:
        refusal = no_links(e, str(folder), link)
        if refusal is not None:
            raise UsageError(str(refusal)) from None
        # (another fault: the write itself names it)
    finally:
        for path in made:
            with contextlib.suppress(OSError):
                os.unlink(path)
