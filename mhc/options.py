"""Every option of a run, declared once.

Each :class:`Options` field carries its command-line flags, help text and help panel in
its metadata; the CLI builds its typer options from these declarations, ``mhc.toml`` is
checked against their types, and ``mhc config`` prints them. :func:`validate` checks
every value and every combination, and that each optional library a choice needs is
installed, before any work starts.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .algorithms import Algorithm, parse_algorithm, parse_algorithms
from .errors import UsageError, printable
from .thresholds import parse_thresholds
from .valuetypes import describe_option, thresholds_text, type_ok

LinkMode = Literal["symlink", "hardlink", "copy"]
VideoMatch = Literal["majority", "frames"]
Linkage = Literal["single", "complete"]
Method = Literal["sweep", "hdbscan"]

IO = "Input and output"
ALGOS = "Algorithms and thresholds"
VIDEOS = "Videos"
PRECISION = "Precision"
SCALE = "Large collections"
FORMAT = "Output format"
PANELS = (IO, ALGOS, VIDEOS, PRECISION, SCALE, FORMAT)


@dataclass(frozen=True)
class Spec:
    """How one option appears on the command line and in ``mhc.toml``."""

    flags: tuple[str, ...]
    help: str
    panel: str
    metavar: str | None = None
    envvar: str | None = None

    @property
    def long(self) -> str:
        """The long flag without dashes: also the option's key in ``mhc.toml``."""
        return next(f for f in self.flags if f.startswith("--"))[2:]


def opt(default: Any, *flags: str, help: str, panel: str, metavar: str | None = None, envvar: str | None = None,
        factory: bool = False) -> Any:
    spec = Spec(flags, help, panel, metavar, envvar)
    if factory:
        return field(default_factory=default, metadata={"spec": spec})
    return field(default=default, metadata={"spec": spec})


@dataclass
class Options:
    """Everything a run needs. Construct it in Python or let ``mhc`` build it from the
    command line and ``mhc.toml``; :func:`validate` checks it."""

    # -- input and output ----------------------------------------------------------
    input: Path = opt(Path("data/images"), "-i", "--input", panel=IO, metavar="FOLDER",
                      help="Folder of media to scan, recursively. Never modified.")
    output: Path = opt(Path("data/output"), "-o", "--output", panel=IO, metavar="FOLDER",
                       help="Output folder: new, empty, or made by mhc (it is replaced on each run). "
                       "Must lie outside the input and outside any other mhc output.")
    cache: Path | None = opt(None, "--cache", panel=IO, metavar="FILE",
                             help="Hash cache file (default: hashes.sqlite in your user cache folder, "
                             "shared by every output; see mhc cache info).")
    no_cache: bool = opt(False, "--no-cache", panel=IO, help="Neither read nor write the hash cache.")
    workers: int = opt(0, "-j", "--workers", panel=IO, metavar="N",
                       help="Hashing processes (0: one per core; at most 4 per core).")
    follow_symlinks: bool = opt(False, "--follow-symlinks", panel=IO,
                                help="Also scan symlinked folders (each real folder once).")
    exclude: list[str] = opt(list, "--exclude", panel=IO, metavar="GLOB", factory=True,
                             help="Leave out files and folders whose name matches GLOB (@eaDir, '*.tmp.jpg'), "
                             "or whose path under the input does if GLOB has a slash ('phone/cache/*'); "
                             "repeatable.")
    max_pixels: int | None = opt(None, "--max-pixels", panel=IO, metavar="N",
                                 help="Skip images larger than this many pixels (default 178956970, Pillow's "
                                 "decompression-bomb guard).")
    file_timeout: float = opt(300.0, "--file-timeout", panel=IO, metavar="SECONDS",
                              help="Skip a file whose decoding takes longer (a damaged file that hangs the decoder, "
                              "a share that stopped answering); 0: no limit. Kept by the worker processes that "
                              "decode videos, and pictures when 24 or more are to be hashed (even with -j 1).")
    dry_run: bool = opt(False, "-n", "--dry-run", panel=IO,
                        help="Compute and print the tables; write nothing (no output, no cache).")

    # -- algorithms and thresholds ------------------------------------------------------
    algorithms: list[str] = opt(list, "-a", "--algo", panel=ALGOS, metavar="NAME_SIZE", factory=True,
                                help="Algorithm as NAME_SIZE, repeatable or listed (-a phash_8,dhash_8; default: "
                                "phash_8 ahash_8 dhash_8 whash_8 phash_16). See 'Algorithms' below.")
    preset: str | None = opt(None, "--preset", panel=ALGOS, metavar="NAME",
                             help="A named algorithm set: default, or image-clustering (its 14 algorithms).")
    thresholds: str | None = opt(None, "-t", "--thresholds", panel=ALGOS, metavar="START:STOP:STEP",
                                 help="Hamming distances to sweep, in bits (0:19:1) or percent of the hash bits "
                                 "(0%:30%:2%); STOP is included and clipped to the hash's bits. Default per hash "
                                 "size: see 'Thresholds' below.")
    exact: bool = opt(False, "--exact", panel=ALGOS,
                      help="Decode at full resolution: bit-exact imagehash results, slower.")

    # -- videos -------------------------------------------------------------------------
    frames: int = opt(20, "--frames", panel=VIDEOS, metavar="N",
                      help="Frames sampled per video, evenly over its duration (below 16, at exact times: "
                      "nearest keyframes differ between encodes).")
    video_exact: bool = opt(False, "--video-exact", panel=VIDEOS,
                            help="Exact frame times (slower) instead of the nearest keyframes.")
    video_match: VideoMatch = opt("majority", "--video-match", panel=VIDEOS, metavar="majority|frames",
                                  help="Compare videos by the per-bit majority of their frame hashes, or by the "
                                  "median distance of time-aligned frames (stricter).")
    cross_media: bool = opt(False, "--cross-media", panel=VIDEOS,
                            help="Also link a video with images that match one of its frames.")
    duration_tolerance: float = opt(0.05, "--duration-tolerance", panel=VIDEOS, metavar="F",
                                    help="Videos whose durations differ by more than this fraction of the longer "
                                    "(and more than 1.5 s) are not linked; 0 turns it off.")

    # -- precision ----------------------------------------------------------------------
    isometric: bool = opt(False, "--isometric", panel=PRECISION,
                          help="Mirrored and rotated copies match: the least distance over the 8 "
                          "rotations/mirrors.")
    crops: bool = opt(False, "--crops", panel=PRECISION,
                      help="Also link a cropped copy (any shape, down to a quarter of the width or height) "
                      "to its source, and copies the hashes missed, when their pixels confirm it; "
                      "such links join at every threshold. A cold run takes up to 2.5x as long; reruns reuse "
                      "the confirmed links.")
    verify: str | None = opt(None, "--verify", panel=PRECISION, metavar="ssim[:T]",
                             help="Keep only links whose small grey versions have structural similarity >= T "
                             "(default 0.7). Needs scikit-image: pip install 'mhc[precision]'.")
    max_cluster_size: int | None = opt(None, "--max-cluster-size", panel=PRECISION, metavar="N",
                                       help="Split a cluster that would grow past N files along its weakest links.")
    linkage: Linkage = opt("single", "--linkage", panel=PRECISION, metavar="single|complete",
                           help="single: connected components; complete: every pair of a cluster within the "
                           "threshold (no chaining).")
    method: Method = opt("sweep", "--method", panel=PRECISION, metavar="sweep|hdbscan",
                         help="sweep: threshold folders; hdbscan: density clustering into <algo>/hdbscan_minN/. "
                         "HDBSCAN needs scikit-learn: pip install 'mhc[precision]'.")
    min_cluster_size: int = opt(2, "--min-cluster-size", panel=PRECISION, metavar="N",
                                help="Smallest cluster HDBSCAN forms (with --method hdbscan).")
    require: list[str] = opt(list, "--require", panel=PRECISION, metavar="NAME_SIZE:BITS", factory=True,
                             help="Combined evidence, repeatable: link only where every named algorithm agrees "
                             "within its threshold; written as combined_.../, swept at 25-100 %.")

    # -- large collections --------------------------------------------------------------
    no_unclustered_links: bool = opt(False, "--no-unclustered-links", panel=SCALE,
                                     help="Leave the unclustered_U folders empty (much less writing).")
    changed_only: bool = opt(False, "--changed-only", panel=SCALE,
                             help="Write only threshold folders whose clusters differ from the previous "
                             "threshold's.")
    dask: str | None = opt(None, "--dask", panel=SCALE, metavar="ADDRESS", envvar="DASK_SCHEDULER",
                           help="Hash on a Dask cluster, e.g. tcp://scheduler:8786 (workers must see the same "
                           "paths). Needs pip install 'mhc[dask]'.")

    # -- output format ------------------------------------------------------------------
    link: LinkMode = opt("symlink", "--link", panel=FORMAT, metavar="symlink|hardlink|copy",
                         help="How files appear in the output.")
    relative_links: bool = opt(False, "--relative-links", panel=FORMAT,
                               help="Relative symlink targets (default: absolute).")
    no_report: bool = opt(False, "--no-report", panel=FORMAT,
                          help="Skip the HTML report (index.html, report/) and its thumbnails.")

    def cache_path(self) -> Path | None:
        """The cache file this run uses (None with ``no_cache``)."""
        if self.no_cache:
            return None
        return Path(self.cache) if self.cache is not None else default_cache_path()


def default_cache_path() -> Path:
    """``hashes.sqlite`` in the per-user cache folder (``$XDG_CACHE_HOME/mhc`` on Linux):
    hashes are shared by every output, and nothing is written next to your folders."""
    import platformdirs

    return platformdirs.user_cache_path("mhc", appauthor=False) / "hashes.sqlite"


def fields() -> list[tuple[dataclasses.Field, Spec, Any]]:
    """Every option: (dataclass field, its :class:`Spec`, its resolved type)."""
    hints = typing.get_type_hints(Options)
    return [(f, f.metadata["spec"], hints[f.name]) for f in dataclasses.fields(Options)]


def default_of(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def given(options: Options) -> set[str]:
    """Names of the options whose values differ from their defaults."""
    return {f.name for f, _, _ in fields() if getattr(options, f.name) != default_of(f)}


def flag_of(name: str) -> str:
    return "--" + next(s for f, s, _ in fields() if f.name == name).long


# -- checks -------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunPlan:
    """A validated run: what to hash and how to cluster it."""

    options: Options
    input: Path  # absolute
    output: Path  # absolute
    algorithms: list[Algorithm]  # the -a algorithms (each gets its folder)
    thresholds: dict[str, list[int]]  # per algorithm key
    required: list[tuple[Algorithm, int]]  # --require: (algorithm, bits)
    verify: float | None  # SSIM threshold
    cache: Path | None

    @property
    def hash_algorithms(self) -> list[Algorithm]:
        """Every algorithm to hash: the -a ones, then those only --require names."""
        return self.algorithms + [a for a, _ in self.required if a not in self.algorithms]


def validate(options: Options, *, outputs: bool = True) -> RunPlan:
    """Check every option, every combination and every optional library a choice needs,
    before any work starts. Raises :class:`UsageError` saying how to fix the first problem."""
    if options.thresholds is not None and not isinstance(options.thresholds, str):  # 10, [2, 5, 10], range(0, 20)
        options = dataclasses.replace(options, thresholds=thresholds_text(options.thresholds))
    _check_types(options)
    algos = parse_algorithms(options.algorithms, options.preset)
    thresholds = {a.key: parse_thresholds(options.thresholds, a) for a in algos}
    o = options
    if o.workers < 0:
        raise UsageError(f"--workers must be 0 (all cores) or more, not {o.workers}")
    _choice("link", o.link, LinkMode)
    _choice("video-match", o.video_match, VideoMatch)
    _choice("linkage", o.linkage, Linkage)
    _choice("method", o.method, Method)
    if not 0 <= o.file_timeout <= 1e9:  # (NaN and infinity too)
        raise UsageError(f"--file-timeout is a number of seconds (0: no limit), e.g. 300, not {o.file_timeout:g}")
    if o.max_pixels is not None and o.max_pixels < 1:
        raise UsageError("--max-pixels must be a positive number of pixels, e.g. 200000000")
    if not 1 <= o.frames <= 1000:
        raise UsageError(f"--frames must be 1 to 1000 frames per video, not {o.frames}")
    if not 0 <= o.duration_tolerance < 1:
        raise UsageError(f"--duration-tolerance is a fraction from 0 (off) to below 1, e.g. 0.05, not "
                         f"{o.duration_tolerance}")
    verify = parse_verify(o.verify) if o.verify is not None else None
    if o.max_cluster_size is not None and o.max_cluster_size < 2:
        raise UsageError(f"--max-cluster-size must be 2 or more, not {o.max_cluster_size}")
    if o.min_cluster_size < 2:
        raise UsageError(f"--min-cluster-size must be 2 or more, not {o.min_cluster_size}")
    for g in o.exclude:
        if not isinstance(g, str) or not g.strip("/ "):
            raise UsageError(f"--exclude needs a name or path pattern, e.g. @eaDir or 'phone/cache/*', not {g!r}")
    required = [parse_require(s) for s in o.require]
    if required and len(required) < 2:
        raise UsageError("--require combines algorithms: give two or more, e.g. --require phash_16:30 "
                         "--require dhash_16:40")
    if len({a for a, _ in required}) < len(required):
        raise UsageError("--require names one algorithm twice; give each algorithm once")
    _check_combinations(options)
    _check_libraries(options)
    if o.dask:  # after the library check: parsing it needs distributed
        dask_host_port(o.dask)
    inp = Path(os.path.abspath(o.input))
    out = Path(os.path.abspath(o.output))
    cache = o.cache_path()
    from .cache import check_cache_path
    from .paths import check_input, check_output, check_path

    check_path("-i/--input", inp)
    if outputs:
        check_path("-o/--output", out)
    if cache is not None:
        check_path("--cache", cache)
    check_input(inp, o.input)
    if outputs:
        check_output(out, inp, writing=not o.dry_run, link=o.link)
    if cache is not None:
        check_cache_path(cache, inp, out if outputs else inp, default=o.cache is None)
    return RunPlan(options, inp, out, algos, thresholds, required, verify, cache)


def parse_verify(spec: str) -> float:
    """``ssim`` or ``ssim:THRESHOLD`` -> the SSIM threshold."""
    from .precision import SSIM_DEFAULT

    name, _, value = spec.partition(":")
    if name.strip().lower() != "ssim":
        raise UsageError(f"--verify {spec!r}: the only verifier is ssim; write --verify ssim or --verify ssim:0.6")
    if not value:
        return SSIM_DEFAULT
    try:
        t = float(value)
    except ValueError:
        t = -2.0
    if not -1 <= t <= 1:
        raise UsageError(f"--verify {spec!r}: the SSIM threshold is a number from -1 to 1, e.g. ssim:0.6")
    return t


def parse_require(spec: str) -> tuple[Algorithm, int]:
    """``phash_16:30`` -> (algorithm, threshold in bits)."""
    if "," in spec:  # -a takes a list; --require is given once per algorithm
        raise UsageError(f"--require {spec!r}: one NAME_SIZE:BITS each; repeat it: --require phash_8:10 "
                         f"--require dhash_8:8")
    name, _, value = spec.partition(":")
    algo = parse_algorithm(name)
    try:
        t = int(value)
    except ValueError:
        raise UsageError(f"--require {spec!r} is not NAME_SIZE:BITS; write e.g. --require phash_16:30") from None
    if not 0 <= t <= algo.bits:
        raise UsageError(f"--require {spec!r}: the threshold must be 0 to {algo.bits} bits")
    return algo, t


def _choice(flag: str, value: str, kind: Any) -> None:
    allowed = typing.get_args(kind)
    if value not in allowed:
        raise UsageError(f"--{flag} must be one of {', '.join(allowed)}, not {value!r}")


def _check_types(options: Options) -> None:
    """Values of the wrong type (from Python or a config file) are refused, not crashed on."""
    for f, spec, hint in fields():
        value = getattr(options, f.name)
        if not type_ok(value, hint):
            raise UsageError(f"--{spec.long} must be {describe_option(f.name, hint)}, not {value!r}")
        # (mhc.toml's "\u0000" or Python's "\0": no path can hold it, and os calls raised
        # ValueError "embedded null byte", exit 70)
        texts = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(t, (str, Path)) and "\0" in str(t) for t in texts):
            raise UsageError(f"--{spec.long} {printable(str(value))} holds a NUL character, which no path or "
                             f"value can")


# Which clustering options each clusterer honours (see mhc.clustering); any other one
# given with it is refused here, before hashing.
CLUSTERING_OPTIONS = ("thresholds", "isometric", "crops", "verify", "max_cluster_size", "linkage",
                      "min_cluster_size", "cross_media")
HONOURED = {
    "sweep": {"thresholds", "isometric", "crops", "verify", "max_cluster_size", "linkage", "cross_media"},
    "hdbscan": {"min_cluster_size"},
}
WHY_NOT = {
    ("hdbscan", "thresholds"): "HDBSCAN finds its own clusters instead of a threshold sweep",
    ("hdbscan", "isometric"): "HDBSCAN measures plain Hamming distances between hashes",
    ("hdbscan", "crops"): "HDBSCAN measures plain Hamming distances between hashes",
    ("hdbscan", "verify"): "HDBSCAN forms clusters from densities, not links that could be verified",
    ("hdbscan", "max_cluster_size"): "HDBSCAN decides cluster sizes itself",
    ("hdbscan", "linkage"): "HDBSCAN has its own linkage",
    ("hdbscan", "cross_media"): "HDBSCAN clusters images and videos separately",
    ("sweep", "min_cluster_size"): "it is HDBSCAN's setting; add --method hdbscan or drop it",
}


def _check_combinations(options: Options) -> None:
    chosen = given(options)
    for name in CLUSTERING_OPTIONS:
        if name in chosen and name not in HONOURED[options.method]:
            why = WHY_NOT.get((options.method, name), "")
            method = "--method hdbscan" if options.method == "hdbscan" else "the threshold sweep"
            raise UsageError(f"{flag_of(name)} does not apply to {method}" + (f": {why}" if why else "")
                             + "; drop one of them")


def _check_libraries(options: Options) -> None:
    needs = []
    if options.verify is not None:
        needs.append(("skimage", "--verify ssim needs scikit-image", "precision"))
    if options.method == "hdbscan":
        needs.append(("sklearn", "--method hdbscan needs scikit-learn", "precision"))
    if options.dask:
        needs.append(("distributed", "--dask needs Dask's distributed scheduler", "dask"))
    for module, what, extra in needs:
        if importlib.util.find_spec(module) is None:
            raise UsageError(f"{what}: pip install 'mhc[{extra}]'")


def dask_host_port(address: str) -> tuple[str, int] | None:
    """The host and port of a TCP or TLS scheduler address (None for other transports). An
    address Dask cannot parse is the user's typo, said before any scanning (Client() would
    raise a bare ValueError once hashing starts)."""
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, location = parse_address(address)
        return parse_host_port(location) if scheme in ("tcp", "tls") else None
    except (ValueError, TypeError) as e:
        raise UsageError(f"--dask {address!r} is not a scheduler address ({e}); write e.g. --dask "
                         f"tcp://scheduler:8786, as `dask scheduler` prints it") from None
