# Every target that runs code depends on .venv, which is created when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The CPU build of torch that lies on this machine's disk; pinned here so that pip never
# resolves a bare `torch` (a multi-GB CUDA build). The package itself asks for torch>=2.4.
TORCH_PIN := torch==2.13.0

.PHONY: venv demo test test-slow test-cuda bench lint clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: venv
	$(VENV)/bin/lstmkit forecast demo

test: venv
	KERAS_BACKEND=torch $(PY) -m pytest -q

test-slow: venv
	KERAS_BACKEND=torch $(PY) -m pytest -q -m slow

# Deselected by default; run on a machine with a GPU.
test-cuda: venv
	KERAS_BACKEND=torch $(PY) -m pytest -q -m cuda

bench: venv
	$(PY) benchmarks/rnn_speed.py

lint: venv
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
