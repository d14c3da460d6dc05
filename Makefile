# osteorisk: the two commands are `make run` and `make test` (see README.md).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
FHIR_VENV := .venv-fhir
STAMP := $(VENV)/.osteorisk-installed
FHIR_STAMP := $(FHIR_VENV)/.installed
PIP_FLAGS := --disable-pip-version-check --no-input -q
PACKAGES := imaging clinical fusion server

.PHONY: help setup run test lint format typecheck pytest protos schemas lock fhir-venv bench clean model

help:
	@echo "make run    set up .venv and run the main job on embedded defaults"
	@echo "make test   set up .venv and run the whole suite (lint, types, tests)"
	@echo "make protos | schemas | lock | bench | clean"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_FLAGS) --upgrade "pip>=24"
	$(BIN)/python -m pip install $(PIP_FLAGS) -c constraints.txt -e '.[dev,forest]'
	@touch $@

setup: $(STAMP)

# The FHIR server of the integration tests (sekmet-fhir pins python-dateutil differently: own venv).
$(FHIR_STAMP):
	@test -x $(FHIR_VENV)/bin/python || $(PYTHON) -m venv $(FHIR_VENV)
	$(FHIR_VENV)/bin/python -m pip install $(PIP_FLAGS) "sekmet-fhir==0.1.1"
	@touch $@

fhir-venv: $(FHIR_STAMP)

# The bundled default model (synthetic, not for clinical use): rebuilt only when fusion/ or pyproject change.
MODEL_DIR := models/default
MODEL_STAMP := $(MODEL_DIR)/manifest.json
FUSION_SOURCES := $(shell find fusion -name '*.py' -o -name '*.json' 2>/dev/null)

$(MODEL_STAMP): $(STAMP) pyproject.toml $(FUSION_SOURCES)
	$(BIN)/python -m fusion.bundled --out $(MODEL_DIR)

model: $(MODEL_STAMP)

run: setup model
	$(BIN)/python -m server.demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: setup
	$(BIN)/mypy

pytest: setup fhir-venv model
	$(BIN)/python -m pytest

test: lint typecheck pytest

protos: setup
	$(BIN)/python -m server.proto_codegen

schemas: setup
	$(BIN)/python -m server.json_schemas

lock: setup
	@{ echo "# Exact versions the tests run with (pip constraints). Regenerate with \`make lock\` after changing pyproject.toml."; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e' | sed 's/+cpu//' | sort; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

bench: setup
	@for script in bench/*_bench.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) $(FHIR_VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
