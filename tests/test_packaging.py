"""constraints.txt, the versions `make run` and `make test` install: true to pyproject.toml's
ranges, complete for mhc's own dependencies, and what this suite is running with; and
constraints-lowest.txt (`make test-lowest`): pyproject.toml's lower bounds, exactly."""
from __future__ import annotations

import os
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


# the pins this venv was installed with: `make test-lowest` says constraints-lowest.txt
LOCK = os.environ.get("MHC_LOCK", "constraints.txt")


def _pins(lock: str = "constraints.txt") -> dict[str, tuple[str, Requirement]]:
    """A constraints file's pins that apply to this Python: name -> (version, requirement)."""
    pins = {}
    for line in (ROOT / lock).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        req = Requirement(line)
        assert req.marker is not None, f"{line!r}: a pin names the Python it was tested on"
        (spec,) = req.specifier
        assert spec.operator == "==", f"{line!r}: a pin is one version"
        if req.marker.evaluate():
            pins[canonicalize_name(req.name)] = (spec.version, req)
    return pins


def _direct() -> list[Requirement]:
    """pyproject.toml's dependencies and the test extras, as this Python installs them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]
    env = default_environment()
    return [r for r in reqs if r.marker is None or r.marker.evaluate(env)]


def test_every_pin_is_one_version_for_a_named_python():
    _pins()  # asserts each line's form, whichever Python it names
    lines = [line for line in (ROOT / "constraints.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    names = {canonicalize_name(Requirement(line).name) for line in lines}
    assert {"av", "numpy", "pillow", "imagehash", "pip"} <= names


@pytest.mark.skipif(not _pins(), reason="constraints.txt pins another Python")
def test_pins_cover_and_satisfy_pyprojects_ranges():
    pins = _pins()
    for req in _direct():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned in constraints.txt: run `make lock`"
        version = pins[name][0]
        assert req.specifier.contains(version, prereleases=True), (
            f"constraints.txt pins {req.name}=={version}, outside pyproject.toml's "
            f"{req.specifier}: run `make lock`")


def test_the_lowest_pins_are_pyprojects_lower_bounds():
    lowest = _pins("constraints-lowest.txt")
    if not lowest:
        pytest.skip("constraints-lowest.txt pins another Python")
    bounds = {}
    for req in _direct():
        (low,) = [s.version for s in req.specifier if s.operator == ">="]
        bounds[canonicalize_name(req.name)] = low
    assert sorted(lowest) == sorted(bounds), "constraints-lowest.txt names other packages than pyproject.toml"
    for name, (version, _) in lowest.items():
        assert Version(version) == Version(bounds[name]), (
            f"constraints-lowest.txt pins {name}=={version}, pyproject.toml's lower bound is {bounds[name]}")


@pytest.mark.skipif(not _pins(LOCK), reason=f"{LOCK} pins another Python")
def test_the_suite_runs_with_the_pinned_versions():
    """What passes here is what constraints.txt promises a fresh clone (`make test` installs
    from it; a venv changed by hand shows up here), or, under `make test-lowest`, the lower
    bounds."""
    differ = []
    for name, (version, _) in _pins(LOCK).items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            differ.append(f"{name} not installed")
            continue
        if have != version:
            differ.append(f"{name} {have} (pinned {version})")
    assert not differ, f"this venv differs from {LOCK} ({sys.version.split()[0]}): {differ}"
