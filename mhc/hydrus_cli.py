"""``mhc hydrus push``: the command-line side of :mod:`mhc.hydrus`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .cli import FlagHelpGroup, _setup_logging, app, command, out, user_errors
from .errors import EnvironmentFault, printable

hydrus_app = typer.Typer(cls=FlagHelpGroup, help="Hydrus Network: send pairs to a running client as potential "
                         "duplicates.", no_args_is_help=True)
app.add_typer(hydrus_app, name="hydrus")


@command(hydrus_app, "push")
def hydrus_push(
    algo: str = typer.Option(..., "-a", "--algo", help="One algorithm, NAME_SIZE (e.g. phash_16).", metavar="NAME_SIZE"),
    threshold: int = typer.Option(..., "-t", "--threshold", help="Largest Hamming distance in bits (inclusive).",
                                  metavar="BITS"),
    api_url: str = typer.Option("http://127.0.0.1:45869", "--api-url", help="The Hydrus client's API address.",
                                metavar="URL"),
    api_key: str = typer.Option(..., "--api-key", envvar="HYDRUS_API_KEY", help="An access key with the permissions "
                                "'search for and fetch files' and 'manage file relationships'.", metavar="KEY"),
    input: Path = typer.Option(Path("data/images"), "-i", "--input", help="Folder of media (the files Hydrus holds, "
                               "or copies of them: files are matched by SHA-256).", metavar="FOLDER"),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Hash cache file (default: your user cache folder's).",
                                         metavar="FILE"),
    batch: int = typer.Option(100, "--batch", help="Pairs per request.", metavar="N"),
    dry_run: bool = typer.Option(False, "-n", "--dry-run", help="Find and check the pairs; send nothing.", metavar=""),
    workers: int = typer.Option(0, "-j", "--workers", help="Hashing processes for files not in the cache.", metavar="N"),
) -> None:
    """Send the pairs of one threshold to Hydrus as potential duplicates (by SHA-256).

    Example: mhc hydrus push -a phash_16 -t 12 --api-key 0123abcd... --dry-run
    """
    from .collection import hash_folder
    from .hydrus import HydrusClient, push_pairs

    _setup_logging(False)
    with user_errors():
        collection = hash_folder(input, [algo], cache=cache, workers=workers)
        pairs = collection.pairs(algo, threshold)
        client = HydrusClient(api_url, api_key)
        try:
            result = push_pairs(pairs, client, batch=batch, dry_run=dry_run)
        except ConnectionError as e:
            raise EnvironmentFault(f"{e}; is the Hydrus client running with its Client API on at {api_url}?") from None
    verb = "would send" if dry_run else "sent"
    out.print(f"{result.pairs} pairs within {threshold} bits; {verb} {result.sent} as potential duplicates"
              + (f"; {result.failed_batches} batch(es) failed after retries" if result.failed_batches else ""),
              highlight=False)
    if result.unknown_files:
        out.print(f"{len(result.unknown_files)} file(s) unknown to the Hydrus client (their pairs were not sent):")
        for p in result.unknown_files:
            out.print(f"  {printable(p)}", highlight=False, markup=False)
    if result.failed_batches:
        raise typer.Exit(1)
