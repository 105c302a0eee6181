#!/usr/bin/env python3
"""Launcher: ``./cluster.py [OPTIONS]`` is ``mhc [OPTIONS]`` (see ``./cluster.py --help``)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mhc.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
