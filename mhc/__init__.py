"""mhc (MediaHashCluster): group duplicate and near-duplicate media by perceptual hashing.

Two calls, like imagededup's::

    import mhc
    collection = mhc.hash_folder("data/images", ["phash_8"])      # hashed once, cached
    for a, b, distance in collection.pairs("phash_8", 8): ...     # pairs within 8 bits
    clustering = collection.sweep("phash_8", range(0, 20))        # one partition per threshold

and the whole job as one: ``mhc.run(mhc.Options(input=..., output=..., algorithms=[...]))``.
Each stage is also callable alone: :func:`discover`, :func:`compute_hashes`,
:func:`iter_pairs`, :func:`spanning_forest`, :func:`sweep`, :func:`write_tree`.
"""
__version__ = "0.2.0"


MIN_ADDRESS_SPACE = 256 << 20  # below this mhc cannot start (measured under ulimit -v: see below)


def _check_address_space() -> None:
    # Under an address-space limit (ulimit -v: batch schedulers, shared hosts), OpenBLAS'
    # start-up (numpy's and scipy's, when they are imported below) reserves a 32 MB buffer
    # per core, and when that fails it retries forever, at 100% CPU and deaf to Ctrl-C and
    # SIGTERM (OpenMathLib/OpenBLAS#5289): at `ulimit -v 300000` on 2 cores mhc hung at
    # import. mhc's parallelism is its own processes and its matrices are tiny, so one BLAS
    # thread costs nothing; the user's own OPENBLAS_NUM_THREADS is left as it is.
    # Below MIN_ADDRESS_SPACE even that is not enough: importing Pillow failed (a traceback,
    # under ~220 MB), scipy's OpenBLAS still spun forever (~220-250 MB), or a thread could not
    # start ("mhc failed unexpectedly", 240 MB); 253 MB ends a run on its first large decode.
    # Refused at once instead, before any of those imports.
    import os
    import resource
    import sys

    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    if soft == resource.RLIM_INFINITY:
        return
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if soft < MIN_ADDRESS_SPACE:
        problem = (f"mhc needs at least {MIN_ADDRESS_SPACE >> 20} MB of address space, and ulimit -v allows this "
                   f"process {soft >> 20} MB; raise the limit (e.g. ulimit -v unlimited) and run again")
        # the command line: one line, exit 3
        if _run_as_command(sys):
            sys.stderr.write(f"Error: {problem}\n")  # (nothing else is loaded yet to say it)
            raise SystemExit(3)
        raise ImportError(problem, name="mhc")


def _run_as_command(sys) -> bool:
    """Whether mhc is imported by the ``mhc`` command (the console script, ./cluster.py or
    ``python -m mhc``), under whatever name it was called: a link named otherwise to the
    console script is still the command."""
    import os

    if os.path.basename(sys.argv[0]) in ("mhc", "cluster.py", "-m"):  # (python -m: argv[0] is "-m" while it imports)
        return True
    # ... else by what the running script says: both scripts import the command line's main
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    try:
        with open(path, "rb") as f:
            return b"from mhc.cli import main" in f.read(8192)
    except (OSError, TypeError):  # (an interactive Python, or python -c: no script)
        return False


_check_address_space()


def _guard_start() -> None:
    import sys

    if _run_as_command(sys):  # (a program that imports mhc keeps its own signal handling)
        from .stopping import guard_start

        guard_start()


_guard_start()

from .algorithms import Algorithm, parse_algorithm, parse_algorithms  # noqa: E402
from .cache import HashCache  # noqa: E402
from .clustering import Clustering  # noqa: E402
from .collection import HashedCollection, Pair, hash_folder  # noqa: E402
from .decode import DecodeSettings, open_image  # noqa: E402
from .discover import MediaFile, discover  # noqa: E402
from .errors import EnvironmentFault, FileError, MhcError, UsageError  # noqa: E402
from .events import ProgressEvent  # noqa: E402
from .hashing import HashPlan, hash_file  # noqa: E402
from .metric import MatchOptions  # noqa: E402
from .options import Options, validate  # noqa: E402
from .pairs import Edges, find_pairs, hamming, iter_pairs, pack  # noqa: E402
from .pipeline import RunResult, run  # noqa: E402
from .runner import compute_hashes  # noqa: E402
from .summary import read_summary  # noqa: E402
from .sweep import Partition, spanning_forest, sweep  # noqa: E402
from .thresholds import default_thresholds, parse_thresholds  # noqa: E402
from .writing import write_tree  # noqa: E402

__all__ = [
    "Algorithm", "Clustering", "DecodeSettings", "Edges", "EnvironmentFault", "FileError", "HashCache", "HashPlan",
    "HashedCollection", "MatchOptions", "MediaFile", "MhcError", "Options", "Pair", "Partition", "ProgressEvent",
    "RunResult", "UsageError", "compute_hashes", "default_thresholds", "discover", "find_pairs", "hamming",
    "hash_file", "hash_folder", "iter_pairs", "open_image", "pack", "parse_algorithm", "parse_algorithms",
    "parse_thresholds", "read_summary", "run", "spanning_forest", "sweep", "validate", "write_tree",
]
