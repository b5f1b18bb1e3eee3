# Two entry points: `make serve` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
EXTRAS ?= cpu,train,dev
CONSTRAINTS ?= constraints/cpu.txt
HOST ?= 127.0.0.1
PORT ?= 8000

SAMPLES := $(VENV)/share/opencv-samples

.PHONY: install serve test lint audit load clean samples browser image-test

# the service and its Python client (client/, a package of its own: `pip install ./client`)
$(VENV)/.installed: pyproject.toml client/pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e ".[$(EXTRAS)]" -e ./client
	touch $@

# the Numba kernels (solvers, refinement, JSON scan), compiled ahead of time into Numba's on-disk
# cache (NUMBA_CACHE_DIR, or app/*/__pycache__): a server start then loads them in about a second
KERNELS := $(VENV)/.kernels
$(KERNELS): $(VENV)/.installed $(wildcard app/geometry/*.py app/alignment/*.py) app/services/json_scan.py app/services/warmup.py
	$(PY) -m app.services.warmup
	touch $@

install: $(VENV)/.installed $(KERNELS)

serve: install
	$(VENV)/bin/homography-serve --host $(HOST) --port $(PORT)

# graf1/graf3 + ground truth for the real-pair tests (skipped, with the reason, when absent)
$(SAMPLES)/H1to3p.xml:
	-bash scripts/opencv-samples.sh $(SAMPLES) || echo "warning: opencv-doc samples unavailable"

samples: $(SAMPLES)/H1to3p.xml

# Debian's chromium + chromium-driver for the browser test (apt-get, as root); never fails:
# without them tests/web/test_browser.py is skipped and says why
browser:
	-@bash scripts/browser.sh

test: install samples browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/lint-imports

# needs the PyPI JSON API or OSV (not reachable from the CI sandbox)
audit: install
	$(VENV)/bin/pip-audit --skip-editable

load: install
	$(PY) bench/load.py

# build the CPU image with podman (Debian base from debootstrap) and serve it from its own file
# system: /ready, one /estimate, one /solve (as root; installs podman and debootstrap if missing)
image-test: install
	$(PY) scripts/image_test.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
