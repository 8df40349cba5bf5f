# Two commands do all the set-up: `make quickstart` and `make test`.
# Both create .venv on first use. On a GPU cluster, set TORCH_SPEC to your CUDA build (or to nothing to keep the
# torch already in your environment) and VENV to where you want the environment.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.moda-installed

.PHONY: setup system-deps quickstart test test-fast lint format

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel setuptools
	$(if $(TORCH_SPEC),$(PY) -m pip install --quiet "$(TORCH_SPEC)")
	$(PY) -m pip install --quiet -e ".[dev]"
	# Packages whose declared dependencies would pull GBs we never import (see the file for why each one).
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	touch $(STAMP)

# Optional system packages, installed only when running as root with apt-get available: espeak-ng gives the demo
# corpus real synthetic speech (a built-in fallback voice is used without it); chromium and chromium-driver run the
# web demo's browser test (skipped without them).
SYSTEM_PACKAGES := espeak-ng chromium chromium-driver
system-deps:
	@missing=""; for cmd in espeak-ng chromium chromedriver; do command -v $$cmd >/dev/null || missing="$$missing $$cmd"; done; \
	if [ -z "$$missing" ]; then echo "system packages present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	else echo "not installed:$$missing (espeak-ng: fallback voice; chromium: the browser test is skipped)"; fi

quickstart: setup system-deps
	PATH="$(abspath $(VENV))/bin:$$PATH" bash scripts/quickstart.sh

lint: setup
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# pytest exits 5 when it collects nothing; that is not a failure of the suite.
test: setup system-deps lint
	$(PY) -m pytest $(PYTEST_ARGS); status=$$?; [ $$status -eq 0 ] || [ $$status -eq 5 ] || exit $$status

# The edit loop: everything but the tests marked slow (CI runs them all with `make test`).
test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS); status=$$?; [ $$status -eq 0 ] || [ $$status -eq 5 ] || exit $$status
