"""``mhc hydrus push``: the command-line side of :mod:`mhc.hydrus`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .arguments import FlagHelpGroup
from .cli import _setup_logging, app, command, out, user_errors
from .errors import EXIT_PARTIAL, UsageError, printable
from .pairs_cli import (AlgoOption, ExcludeOption, IsometricOption, SourceOption, ThresholdOption, WorkersOption,
                        unread, which_pairs)

hydrus_app = typer.Typer(cls=FlagHelpGroup, help="Hydrus Network: send pairs to a running client as potential "
                         "duplicates.", no_args_is_help=True)
app.add_typer(hydrus_app, name="hydrus")


@command(hydrus_app, "push")
def hydrus_push(
    algo: Optional[str] = AlgoOption,
    threshold: Optional[str] = ThresholdOption,
    api_url: str = typer.Option("http://127.0.0.1:45869", "--api-url", help="The Hydrus client's API address "
                                "(http:// or https://).", metavar="URL"),
    api_key: str = typer.Option(..., "--api-key", envvar="HYDRUS_API_KEY", help="An access key (64 hex characters) "
                                "with the permissions 'search for and fetch files' and 'edit file relationships'; "
                                "checked before any hashing.", metavar="KEY"),
    input: Optional[Path] = typer.Option(None, "-i", "--input", help="Folder of media (the files Hydrus holds, or "
                                         "copies of them: files are matched by SHA-256; default: the input OUTPUT was "
                                         "made from, else data/images).", metavar="FOLDER"),
    output: Optional[Path] = SourceOption,
    cache: Optional[Path] = typer.Option(None, "--cache", help="Hash cache file (default: the one OUTPUT was made "
                                         "with, else your user cache folder's).", metavar="FILE"),
    batch: int = typer.Option(100, "--batch", help="Pairs per request (1 or more).", metavar="N"),
    retries: int = typer.Option(3, "--retries", help="Tries again after a failed request, waiting 1, 2, 4... s "
                                "(0 or more).", metavar="N"),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds to wait for each answer of the client (a busy "
                                  "client may need more).", metavar="SECONDS"),
    ca_cert: Optional[Path] = typer.Option(None, "--ca-cert", help="For https: trust this certificate (Hydrus' own "
                                           "is self-signed: client.crt in its db folder).", metavar="FILE"),
    insecure: bool = typer.Option(False, "--insecure", help="For https: do not check the certificate at all.",
                                  metavar=""),
    dry_run: bool = typer.Option(False, "-n", "--dry-run", help="Check the key, find and check the pairs; send "
                                 "nothing.", metavar=""),
    force: bool = typer.Option(False, "--force", help="Send even more than 10 distinct pairs per file (and over 1,000): "
                               "refused by default, as a threshold that loose links mostly strangers.", metavar=""),
    workers: int = WorkersOption,
    isometric: bool = IsometricOption,
    crops: bool = typer.Option(False, "--crops", help="Crops (and copies) confirmed by their pixels count as pairs "
                               "too.", metavar=""),
    exclude: Optional[list[str]] = ExcludeOption,
) -> None:
    """Send the pairs of one threshold to Hydrus as potential duplicates (by SHA-256).

    The access key is checked first. Files the client does not hold (never seen, in its
    trash, deleted) are listed with the reason and their pairs are not sent; identical
    copies and repeated pairs are sent once. More than 10 distinct pairs per file (over 1,000),
    the mark of a threshold past where copies lie, is refused unless --force (exit status 2).
    Exit status 1 if some pairs could not be sent, or some files could not be read
    because their disk reported errors (their pairs are not sent).

    Without -a and -t, the pairs of the folder OUTPUT says to open first (the first line says
    which).

    Example: mhc hydrus push -o data/output -a phash_16 -t 12 --api-key 0123abcd... --dry-run
    """
    from .collection import collect
    from .hydrus import HydrusClient, push_pairs
    from .options import Options, validate
    from .thresholds import one_threshold

    _setup_logging(False)
    with user_errors():
        if batch < 1:
            raise UsageError(f"--batch must be 1 or more pairs per request, not {batch}")
        if retries < 0:
            raise UsageError(f"--retries must be 0 or more, not {retries}")
        # the algorithm, input, cache and threshold before the client (what hash_folder would
        # check, once): a typo is said without a network round trip
        folder, cache, recorded, algo, threshold, said = which_pairs(
            input, output, cache, algo, threshold, "mhc hydrus push", {"isometric": isometric, "crops": crops})
        plan = validate(Options(input=folder, algorithms=[algo], cache=cache, workers=workers, isometric=isometric,
                                crops=crops, exclude=list(exclude or recorded)), outputs=False)
        threshold = one_threshold(threshold, plan.algorithms[0])
        if said:
            out.print(said, highlight=False, markup=False, soft_wrap=True)
        client = HydrusClient(api_url, api_key, retries=retries, timeout=timeout, ca_cert=ca_cert, insecure=insecure)
        client.verify()  # before any hashing: a key that cannot do the job fails now
        collection = collect(plan)
        pairs = collection.pairs(algo, threshold, isometric=isometric, crops=crops)
        result = push_pairs(pairs, client, batch=batch, dry_run=dry_run, files=len(collection.files), force=force)
    verb = "would send" if dry_run else "sent"
    out.print(f"{result.pairs} pairs within {threshold} bits: {result.distinct} distinct pairs of files the client "
              f"holds; {verb} {result.sent} as potential duplicates", highlight=False)
    if result.refusal:
        out.print(f"without --dry-run this push would be refused: {result.refusal}", highlight=False, markup=False)
    if result.collapsed:
        out.print(f"{result.collapsed} pair(s) not sent twice: identical copies (one SHA-256) or repeats",
                  highlight=False)
    for line in unread(collection.errors, "their pairs were not sent"):
        out.print(line, highlight=False, markup=False, soft_wrap=True)
    if collection.disk_errors:
        from .terminal import disk_errors_line

        out.print(disk_errors_line(collection.disk_errors), highlight=False, markup=False, soft_wrap=True)
    if result.unknown_files:
        out.print(f"{len(result.unknown_files)} file(s) the client does not hold (their pairs were not sent):",
                  highlight=False)
        for p, why in result.unknown_files.items():
            out.print(f"  {printable(p)}: {why}", highlight=False, markup=False, soft_wrap=True)
    if result.not_sent:
        why = f"; stopped: {result.stopped}" if result.stopped else ""
        again = ("fix that and run again: the client leaves alone the pairs it already has" if result.refused
                 else "run again later to send them")
        out.print(f"{result.not_sent} pair(s) not sent ({result.failed_batches} batch(es) failed{why}); {again}",
                  highlight=False, markup=False)
    if result.not_sent or collection.disk_errors:
        raise typer.Exit(EXIT_PARTIAL)
