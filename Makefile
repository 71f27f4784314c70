# The README's two commands: `make lab` and `make test`. Both create or reuse .venv.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# pytest workers for make test: most of a test's time is a mesh waiting on sockets, so two workers
# roughly halve the wall time even on two cores; each worker takes whole files (--dist loadfile)
TEST_WORKERS ?= 2
STAMP  := $(VENV)/.installed

.PHONY: lab test lint typecheck bench test-kind clean notebooks screenshots

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(PY) -m pip install -q -e '.[lab,kind,test]'
	touch $(STAMP)

lab: $(STAMP)
	$(VENV)/bin/meshkit lab

test: $(STAMP)
	$(VENV)/bin/ruff check meshkit tests benchmarks screenshots
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile
	$(PY) -m pytest -q -p no:cacheprovider --nbval-lax labs/

# DATAPLANE=ambient runs the ambient install's live suite (its own cluster) instead of the sidecar one
DATAPLANE ?= sidecar
test-kind: $(STAMP)
ifeq ($(DATAPLANE),ambient)
	MESHKIT_KIND_TESTS=1 $(PY) -m pytest -q -m kind tests/kind/test_kind_ambient_live.py
else
	MESHKIT_KIND_TESTS=1 $(PY) -m pytest -q -m kind --ignore=tests/kind/test_kind_ambient_live.py
endif

lint: $(STAMP)
	$(VENV)/bin/ruff check meshkit tests benchmarks screenshots

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# Every lab in JupyterLab (headless Chromium), Run All, then each figure output screenshot and checked for
# overlapping text; PNGs in $$MESHKIT_SCREENSHOTS, else pytest's temporary directory (minutes).
screenshots: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider screenshots/

# The labs are edited as jupytext text (labs/NN_slug.py); this rebuilds the notebooks from them.
notebooks: $(STAMP)
	$(VENV)/bin/jupytext --update --to ipynb labs/[0-9][0-9]_*.py

bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
