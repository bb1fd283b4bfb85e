# Two entry points, both safe to run twice on a fresh machine:
#   make demo   installs into .venv and runs the bundled site through the digital twin
#   make test   installs system services (Mosquitto, VictoriaMetrics, ...) and runs lint + tests
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint system-deps

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,energyplus]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dcpue demo

system-deps:
	bash scripts/install-system-deps.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: system-deps lint
	$(VENV)/bin/pytest -q
