# Two commands: `make fit` trains the tutorial's CNN for 5 epochs, `make test` runs the fast tests
# (every module, a few minutes); `make test-all` runs them all (real servers, browser, real data), as CI does.
# Both create .venv and install what they need on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SYSTEM_DATA := /usr/share/datasets/fashion-mnist
EPOCHS ?= 5

.PHONY: fit test test-all floors lint format data install lock tensorboard benchmark screenshots clean

EXTRAS := test,profiler,postgres,export
# the versions CI passed with (pyproject.toml keeps ranges); `make lock` refreshes it
LOCK := constraints.txt

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c $(LOCK) --upgrade pip
	$(PY) -m pip install --quiet -c $(LOCK) -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

# Refresh $(LOCK): the newest versions pyproject.toml's ranges allow, installed into a scratch venv and frozen
# (its header comment kept), then .venv brought to them and the fast tests run; commit it if they pass.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet --upgrade pip
	.venv-lock/bin/pip install --quiet -e ".[$(EXTRAS)]"
	{ sed -n '1,/^$$/p' $(LOCK); .venv-lock/bin/pip freeze --all --exclude-editable; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf .venv-lock
	$(MAKE) test

# Fashion-MNIST offline when possible: Debian's dataset-fashion-mnist package where apt works,
# otherwise fmnist's DataModule downloads it with torchvision on first use.
data:
	@if [ -d $(SYSTEM_DATA) ]; then echo "Fashion-MNIST: $(SYSTEM_DATA)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist \
	  || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist; } \
	  || echo "apt-get could not install dataset-fashion-mnist; torchvision will download the data"; \
	else echo "Fashion-MNIST: not installed system-wide; torchvision will download it into ./data"; fi

fit: install data
	$(PY) -m fmnist fit --trainer.max_epochs $(EPOCHS)

test: install
	$(PY) -m pytest -m "not slow"

test-all: install data
	$(PY) -m pytest

# The floors (.ci/floors.txt): the lowest versions pyproject.toml allows, in their own venv, and the fast
# suite with them (CI runs it). The venv is rebuilt from scratch whenever the floors or pyproject.toml change.
FLOORS_VENV ?= .venv-floors
$(FLOORS_VENV)/.installed: pyproject.toml .ci/floors.txt
	rm -rf $(FLOORS_VENV)
	$(PYTHON) -m venv $(FLOORS_VENV)
	$(FLOORS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(FLOORS_VENV)/bin/python -m pip install --quiet -c .ci/floors.txt -e ".[$(EXTRAS)]"
	touch $@

# (less the check that the venv holds constraints.txt's versions: this one holds the floors on purpose)
floors: $(FLOORS_VENV)/.installed
	$(FLOORS_VENV)/bin/python -m pytest -m "not slow" \
	  --deselect tests/e2e/test_versions.py::test_the_installed_requirements_are_the_pinned_versions

# ruff, configured in pyproject.toml: lint and format check (CI runs it); `make format` rewrites
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# README pictures: two short real-data runs, served by TensorBoard, photographed in headless Chromium
# (needs Debian's chromium: apt-get install chromium)
screenshots: install data
	$(PY) docs/screenshots.py

benchmark: install data
	$(PY) -m benchmarks.bench

# TensorBoard keeps only 10 images per tag unless told: 100 keeps every epoch's pictures of a typical run
SAMPLES ?= 100
tensorboard: install
	$(VENV)/bin/tensorboard --logdir runs --samples_per_plugin images=$(SAMPLES)

clean:
	rm -rf runs build *.egg-info .pytest_cache
