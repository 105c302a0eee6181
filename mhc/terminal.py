"""What a run prints: the counts, and per algorithm the table a user picks a folder from."""
from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .discover import most_skipped
from .errors import printable
from .suggest import MIN_FILES
from .summary import too_flat


def counts_line(result) -> str:
    """Files found = decoded now + from the cache + could not be read."""
    c = result.collection
    s = c.stats
    kinds = f" ({len(c.files) - c.videos} images, {c.videos} videos)" if c.videos else ""
    shared = f" ({s.shared} of them hard links of another: read once)" if s.shared else ""
    return (f"[bold]{c.found}[/] files found{kinds}: [bold]{s.decoded}[/] decoded{shared}, [bold]{s.cached}[/] from the "
            f"cache, [bold]{len(c.errors)}[/] could not be read  ({result.seconds:.2f} s)")


def skipped_line(result) -> str | None:
    """Files passed over for their names (sidecars, documents, formats mhc does not read),
    counted by extension: a picture under a name mhc does not know is then not missed silently."""
    skipped = result.collection.skipped
    if not skipped:
        return None
    shown, rest = most_skipped(skipped)
    more = f", {rest} more" if rest else ""
    return f"{sum(skipped.values())} other file(s) skipped, not images or videos by their names: {shown}{more}"


def hashes_line(result) -> str | None:
    """Which algorithms' hashes were computed now and which came from the cache (when
    files were decoded: a decoded file may still have had some hashes cached)."""
    s = result.collection.stats
    if not any(s.computed_by_algo.values()):
        return None
    now = [f"{k} for {n} files" for k, n in s.computed_by_algo.items() if n]
    cached = [f"{k} ({n})" if s.computed_by_algo[k] else k for k, n in s.cached_by_algo.items() if n]
    return "hashes computed: " + ", ".join(now) + ("; from the cache: " + ", ".join(cached) if cached else "")


def condensed(partitions, suggested: int | None) -> tuple[list, int]:
    """The rows worth printing: the first and last, every threshold where a count changes,
    and the suggested one. Returns (rows, how many were left out)."""
    rows, left = [], 0
    prev = None
    for k, p in enumerate(partitions):
        key = (len(p.clusters), p.clustered_files, p.largest)
        if k in (0, len(partitions) - 1) or key != prev or p.threshold == suggested:
            rows.append(p)
        else:
            left += 1
        prev = key
    return rows, left


def print_summary(result, console: Console) -> None:
    # lines that carry a path are soft-wrapped: never broken by rich, so they stay copyable
    # the marker of the suggestion, in what the terminal can show (rich picks ASCII table
    # borders the same way): a latin-1 or ASCII terminal printed "\u25b6"
    arrow = "▶" if (console.encoding or "").lower().startswith("utf") else ">"
    console.print(counts_line(result), highlight=False)
    line = skipped_line(result)
    if line:
        console.print(line, highlight=False, markup=False)
    excluded = result.collection.excluded
    if excluded:
        console.print(f"{excluded} file(s) and folder(s) left out by --exclude {' '.join(result.options.exclude)}",
                      highlight=False, markup=False)
    aliases = result.collection.aliases
    if aliases:
        link, target = next(iter(aliases.items()))
        console.print(f"{len(aliases)} symlink(s) to files also found by another path: each such file is shown once, "
                      f"under that path (e.g. {printable(link)} -> {printable(target)})", highlight=False,
                      markup=False, soft_wrap=True)
    same = result.collection.same_file_as
    linked = [(i, j) for i, j in enumerate(same) if j is not None]
    if linked:
        i, j = linked[0]
        files = result.collection.files
        console.print(f"{len(linked)} hard link(s): files found under more than one name, each name shown (as "
                      f"copies); removing a name frees no space (e.g. {printable(files[j])} and {printable(files[i])} "
                      f"are one file)", highlight=False,
                      markup=False, soft_wrap=True)
    line = hashes_line(result)
    if line:
        console.print(line, highlight=False)
    # nothing to cluster: tables of zeros, one per algorithm, would only push the reason away
    for a in (result.algorithms if result.files else []):
        unit = "% of each --require threshold" if a.unit == "%" else f"{a.max_distance} bits"
        note = ", kept from an earlier run" if a.carried else ""
        t = Table(title=f"{a.key} ({unit}{note})", title_justify="left")
        for col in ("threshold", "clusters", "files in clusters", "largest cluster", "unclustered"):
            t.add_column(col, justify="right")
        sug = a.suggestion.threshold if a.suggestion else None
        rows, left = condensed(a.partitions, sug)
        for p in rows:
            mark = p.threshold == sug
            label = a.folder(p) if a.method == "hdbscan" else f"{arrow + ' ' if mark else ''}{p.threshold}"
            t.add_row(label, str(len(p.clusters)), str(p.clustered_files), str(p.largest), str(len(p.unclustered)),
                      style="bold green" if mark else None)
        if left:
            t.caption = f"{left} threshold(s) where nothing changes are not shown"
        console.print(t)
        flat = too_flat(a)
        if flat:
            console.print(f"{len(flat)} image(s) too flat for {a.key} to hash reliably (PDQ quality 0, e.g. "
                          f"{escape(printable(Path(result.files[flat[0]]).name))}): never linked", highlight=False)
        if a.suggestion:
            console.print(f"[green]{arrow} suggested threshold {sug}[/]: {a.suggestion.explanation}", highlight=False)
    if result.options.crops:
        m = result.collection.crop_matches
        crops = sum(1 for x in m if x.is_crop)
        console.print(f"--crops: {crops} crop(s) and {len(m) - crops} other copies confirmed by their pixels, "
                      f"linked at every threshold", highlight=False)
    if 0 < len(result.files) < MIN_FILES and not any(a.suggestion for a in result.algorithms):
        # without this line the missing suggestion looks like a fault
        console.print(f"{len(result.files)} file(s): too few to suggest a threshold (that takes {MIN_FILES} or "
                      f"more); the table says at which distance they join", highlight=False)
    rec = result.recommendation
    if rec is not None and len(result.algorithms) > 1:
        folder = next(a.folder(a.partition(rec.threshold)) for a in result.algorithms if a.key == rec.key)
        # the whole path, on one line: pasted into a viewer or a file manager as it is
        where = os.path.join(result.output, rec.key, folder)
        console.print(f"[bold green]{arrow} Open this first:[/] [bold green]{escape(printable(where))}[/]", highlight=False,
                      soft_wrap=True)
        console.print(f"  {rec.explanation}", highlight=False)
    for d in result.dropped:
        console.print(f"removed the folder {d}", highlight=False, markup=False, soft_wrap=True)
    if result.errors:
        e = result.errors[0]
        what = "none of the files could be used (nothing to cluster)" if not result.files else \
            f"{len(result.errors)} file(s) could not be used"
        console.print(f"{what}, e.g. {printable(e.path)}: {e.reason}", highlight=False, markup=False,
                      soft_wrap=True)
        if not result.options.dry_run:
            console.print(f"  all of them with reasons: {os.path.join(result.output, 'errors.csv')}", highlight=False,
                          markup=False, soft_wrap=True)
        if result.disk_errors:
            console.print(f"  {disk_errors_line(result.disk_errors)}", highlight=False, markup=False, soft_wrap=True)
    if result.options.dry_run:
        if result.options.link == "copy":  # planning a tree of copies (a USB drive): its size, and the room there
            from .room import amount, copies_needed, free_space

            o = result.options
            need, copies = copies_needed(((p, not o.no_unclustered_links) for a in result.algorithms
                                          for p in a.partitions if p.changed or not o.changed_only),
                                         result.collection.sizes)
            where, free = free_space(Path(os.path.abspath(result.output)))
            console.print(f"--link copy: a new output would take {amount(need)} ({copies} copies: each file once per "
                          f"threshold folder); {where} has {amount(free)} free", highlight=False, markup=False,
                          soft_wrap=True)
        console.print("[dim]dry run: nothing written[/]")
    else:
        console.print(f"output: {result.output}", highlight=False, markup=False, soft_wrap=True)
        if not result.options.no_report:
            console.print(f"report: {os.path.join(result.output, 'index.html')}", highlight=False, markup=False,
                          soft_wrap=True)


def disk_errors_line(errors: list, alone: bool = False) -> str:
    """What files that failed through their disk (I/O errors) mean: the disk, not the files,
    and not for good (exit status 1; they are not cached, so the next run tries them again).
    ``alone``: the line is not under the summary's line of all the files that failed (-q)."""
    e = errors[0]
    what = f"{len(errors)} file(s) could not be read" if alone else f"{len(errors)} of them"
    example = f"e.g. {printable(e.path)}: {e.reason}; " if alone else ""  # (else the line above gives one)
    return (f"{what} because their disk reported errors ({example}see dmesg): it may be failing, so copy what can "
            f"be read off it; the next run tries them again (exit status 1)")
