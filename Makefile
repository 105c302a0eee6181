# The two commands of the README:
#   make run    set up .venv from pyproject.toml, then run ./cluster.py on data/images
#   make test   set up .venv with the test extras (and the system packages the tests use), run pytest
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# constraints.txt: the versions the suite last passed with (on the Python it names), so a fresh
# clone installs what was tested rather than whatever was released since; `make lock` renews it.
PIP    := $(PY) -m pip install -q -c constraints.txt

.PHONY: run test setup setup-test system-test-deps compile bench clean lock test-lowest

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml constraints.txt
	$(PIP) -e '.[test]'
	touch $@

# constraints.txt anew from the newest releases pyproject.toml admits; then `make test`.
lock:
	PYTHON=$(PYTHON) bash scripts/lock.sh

# The suite with every dependency at pyproject.toml's lower bound (constraints-lowest.txt), in
# .venv-lowest, on Python 3.11 (PYTHON=python3.11 where python3 is another).
test-lowest: system-test-deps
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { echo "make test-lowest: the \
	lowest versions are pinned for Python 3.11, and $(PYTHON) is another; run PYTHON=python3.11 make test-lowest" >&2; \
	exit 2; }
	$(PYTHON) -m venv .venv-lowest
	.venv-lowest/bin/python -m pip install -q --upgrade pip
	.venv-lowest/bin/python -m pip install -q -c constraints-lowest.txt -e '.[test]'
	MHC_LOCK=constraints-lowest.txt .venv-lowest/bin/python -m pytest $(PYTEST_ARGS)

setup: $(VENV)/.installed compile
setup-test: $(VENV)/.installed-test system-test-deps compile

# mhc's own modules compiled to bytecode once (only changed ones again): an editable install
# leaves them as source, and where PYTHONDONTWRITEBYTECODE is set every run compiled them
# anew, ~0.1 s of each start-up (and of each of the test suite's command-line runs).
compile: $(VENV)/.installed
	@$(PY) -m compileall -q mhc > /dev/null

# Debian packages the test suite drives for real (see scripts/system-test-deps.sh).
system-test-deps:
	@bash scripts/system-test-deps.sh

run: setup
	$(PY) cluster.py $(ARGS)

# Two test processes (pytest-xdist): most of the suite's time is mhc's own start-up in the
# subprocesses it drives, so two halve it even on two cores (11.5 min -> 7 min here).
# `make test PYTEST_ARGS="-n 0 -x"` runs it in one process.
PYTEST_ARGS ?= -n 2

test: setup-test
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .venv-lowest data/output data/.mhc-cache.sqlite*
