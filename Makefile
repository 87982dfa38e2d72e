# Two commands for a newcomer: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# One pytest worker per core, each computing on one thread (conftest.py).
PYTEST := $(PY) -m pytest -n auto --dist worksteal

FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: demo test test-all docs wheel-check clean fashion-mnist

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -c constraints.txt -e '.[all,test,docs,release]'
	touch $(STAMP)

demo: $(STAMP) fashion-mnist
	$(VENV)/bin/plugattn demo

# The embedded default data set: Debian's dataset-fashion-mnist package (installed when apt is usable).
fashion-mnist:
	@test -e $(FASHION_MNIST) || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	  else \
	    echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist'," \
	         "or put the four IDX files in a folder and run: .venv/bin/plugattn demo --data-dir FOLDER"; \
	  fi; }

# The real-data tests use Fashion-MNIST when it can be installed, and skip (saying why) when it cannot.
test: $(STAMP)
	-@$(MAKE) --no-print-directory fashion-mnist
	$(PYTEST)

# Everything, including the cases marked slow (the full block × network matrices, the deepest zoo models, the
# minutes-long command-line examples of the README and the guides).
test-all: $(STAMP)
	-@$(MAKE) --no-print-directory fashion-mnist
	$(PYTEST) -m "slow or not slow"

# The documentation site, offline, every warning an error (broken references and links fail the build).
docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -n -E -q -b html docs docs/_build/html
	@echo "the site: docs/_build/html/index.html"

# The release: sdist and wheel built and checked, the wheel installed into a clean venv and tried there.
WHEEL_VENV := build/wheel-venv
wheel-check: $(STAMP)
	rm -rf dist $(WHEEL_VENV)
	$(PY) -m build --outdir dist .
	$(PY) -m twine check --strict dist/*
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/python -m pip install --quiet -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(WHEEL_VENV)/bin/python -m pip install --quiet -c constraints.txt "$$(ls dist/plugattn-*.whl)[cli]"
	$(WHEEL_VENV)/bin/python scripts/check_wheel.py

clean:
	rm -rf $(VENV) build dist docs/_build src/*.egg-info .pytest_cache
