"""``python -m mhc`` is the ``mhc`` command: for a Python whose scripts folder is not on PATH,
or to pick the interpreter (``.venv/bin/python -m mhc``)."""
import sys

from .cli import main

sys.exit(main())
