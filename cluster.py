#!/usr/bin/env python3
"""Launcher: ``./cluster.py [OPTIONS]`` is ``mhc [OPTIONS]`` (see ``./cluster.py --help``).

Run with a Python that lacks mhc's libraries, it re-runs itself with the project's
``.venv`` (made by ``make run``), or says how to make one."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

try:
    from mhc.cli import main
except ModuleNotFoundError as e:
    if (e.name or "").split(".")[0] == "mhc":
        raise
    venv = os.path.join(HERE, ".venv")
    venv_python = os.path.join(venv, "bin", "python")
    # a venv's python is a link to the base one: tell them apart by sys.prefix
    if os.path.exists(venv_python) and os.path.realpath(sys.prefix) != os.path.realpath(venv):
        os.execv(venv_python, [venv_python, os.path.abspath(__file__), *sys.argv[1:]])
    sys.stderr.write(f"mhc cannot start: {e.name or e} is not installed for {sys.executable}.\n"
                     f"Set up first with `make run` (it makes .venv and runs mhc), then use ./cluster.py.\n")
    sys.exit(2)

if __name__ == "__main__":
    sys.exit(main())
