#!/usr/bin/env bash
# Writes constraints.txt anew: the newest releases that pyproject.toml's ranges admit, as a
# fresh venv gets them today (mhc with its test extras), pinned for this Python's minor version.
# Run `make test` after it (it reinstalls .venv from the new file), and commit both together.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$python" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --upgrade pip
# a copy of the sources, so the build leaves nothing in the work tree
mkdir -p "$tmp/src" && git archive HEAD | tar -x -C "$tmp/src"
cp pyproject.toml "$tmp/src/pyproject.toml"
"$tmp/venv/bin/python" -m pip install -q "$tmp/src[test]"
minor=$("$tmp/venv/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
{
  sed -n '/^#/p' constraints.txt
  { "$tmp/venv/bin/python" -m pip freeze --exclude mhc
    echo "pip==$("$tmp/venv/bin/python" -m pip --version | cut -d' ' -f2)"; } \
    | grep -v '^#' | sort -f | sed "s/\$/ ; python_version == \"$minor\"/"
} > "$tmp/constraints.txt"
mv "$tmp/constraints.txt" constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) pins for Python $minor"
