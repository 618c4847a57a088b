# omniforge: `make run` serves the embedded models, `make test` runs the whole suite.
# Both first bring .venv up to date: Python 3.11, every dependency pinned by constraints.txt,
# omniforge itself installed editable. Set-up reruns only when the requirement files change.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# Python 3.11: torch's CPU wheel and the engines are built for it.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)
REQUIREMENTS := requirements.txt requirements-dev.txt constraints.txt pyproject.toml
# The stamp's name carries a hash of the requirement files: a changed pin means a new stamp.
STAMP := $(VENV)/.installed-$(shell cat $(REQUIREMENTS) 2>/dev/null | sha256sum | cut -c1-16)
PIP := $(PY) -m pip --disable-pip-version-check
SERVE_ARGS ?=
PYTEST_ARGS ?=

.PHONY: run test bench setup lock clean

# The embedded chat model is Google's Gemma: serving it means accepting the Gemma Terms of Use
# (https://ai.google.dev/gemma/terms). `make run` accepts them on your behalf and says so;
# `make run ACCEPT_LICENSES=` declines (Gemma is then refused with 403 license_not_accepted).
ACCEPT_LICENSES ?= gemma

run: setup
	@echo "make run: accepting the model terms [$(ACCEPT_LICENSES)] (Gemma Terms of Use: https://ai.google.dev/gemma/terms); see 'omniforge models licenses'"
	OMNIFORGE_ACCEPT_LICENSES="$(ACCEPT_LICENSES)" $(VENV)/bin/omniforge serve $(SERVE_ARGS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) bench/run.py

setup: $(STAMP)

# llama-cpp-python compiles from source the first time (several minutes); pip caches the wheel.
$(STAMP):
	@if [ -z "$(PYTHON)" ] || ! "$(PYTHON)" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then \
		echo "error: omniforge needs Python 3.11 (python3.11 or python3 on PATH; or make PYTHON=/path/to/python3.11)" >&2; \
		exit 1; \
	fi
	@if ! [ -x $(PY) ] || ! $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then \
		echo "creating $(VENV) with $(PYTHON)"; rm -rf $(VENV); "$(PYTHON)" -m venv $(VENV); \
	fi
	$(PIP) install -r requirements.txt -r requirements-dev.txt -c constraints.txt
	$(PIP) install -e . --no-deps --no-build-isolation
	@rm -f $(VENV)/.installed-*
	@touch $@

# Re-pin every installed package to constraints.txt (after changing requirements*.txt).
lock: setup
	@{ echo "# Exact versions of everything requirements.txt and requirements-dev.txt pull in (make lock)."; \
	   echo "# torch is the CPU wheel from local disk (see DESIGN.md)."; \
	   $(PIP) freeze --all --exclude-editable | grep -viE '^(omniforge|pip)=='; } > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
