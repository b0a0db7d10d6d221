# `make demo`: set up, generate miniature upstreams, build the demo mixture in local worker processes.
# `make test`: set up (and Debian's Chromium, for the HTML report's test), lint, run the whole test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean chromium

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# the CPU wheel first: otherwise the bridge extra pulls a multi-GB CUDA torch
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[bridge,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dataprep fixtures data/demo
	$(BIN)/dataprep build recipes/demo.yaml

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# the HTML report's test opens it in Debian's Chromium (root on Debian: installed here when missing)
chromium:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

test: lint chromium
	$(BIN)/pytest -q

clean:
	rm -rf out data $(VENV)
