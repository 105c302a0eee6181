"""mhc (MediaHashCluster): group duplicate and near-duplicate media by perceptual hashing.

The library API the ``mhc`` command is built on::

    from mhc import Options, run
    result = run(Options(input="data/images", output="data/output", algorithms=["phash_8"]))
"""
__version__ = "0.1.0"

from .algorithms import Algorithm, parse_algorithm, parse_algorithms  # noqa: E402
from .cache import HashCache  # noqa: E402
from .decode import DecodeSettings, open_image  # noqa: E402
from .discover import MediaFile, discover  # noqa: E402
from .errors import FileError, MhcError, UsageError  # noqa: E402
from .hashing import HashPlan, compute_hashes, hash_file  # noqa: E402
from .pairs import Edges, find_pairs, iter_pairs, pack  # noqa: E402
from .pipeline import AlgorithmResult, Options, RunResult, cluster_algorithm, run  # noqa: E402
from .sweep import Partition, spanning_forest, sweep  # noqa: E402
from .thresholds import default_thresholds, parse_thresholds  # noqa: E402

__all__ = [
    "Algorithm", "AlgorithmResult", "DecodeSettings", "Edges", "FileError", "HashCache", "HashPlan",
    "MediaFile", "MhcError", "Options", "Partition", "RunResult", "UsageError", "cluster_algorithm",
    "compute_hashes", "default_thresholds", "discover", "find_pairs", "hash_file", "iter_pairs",
    "open_image", "pack", "parse_algorithm", "parse_algorithms", "parse_thresholds", "run",
    "spanning_forest", "sweep",
]
