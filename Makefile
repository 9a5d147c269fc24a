# Perilflow developer tasks. Everything runs from the virtualenv in $(VENV);
# only pip downloads anything.

PYTHON ?= python3.11
VENV ?= .venv
PYTEST_ARGS ?=
DEMO_ARGS ?=

BIN := $(VENV)/bin
# Marks a finished install; redone when a requirements, constraints or setup file changes.
STAMP := $(VENV)/.installed

.PHONY: install test lint demo bench freeze clean chromium

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

# Order-only on the interpreter: its mtime is the base Python's, not the venv's.
$(STAMP): requirements.txt requirements-dev.txt constraints.txt setup.cfg | $(BIN)/python
	$(BIN)/python -m pip install --progress-bar off -r requirements-dev.txt -c constraints.txt
	$(BIN)/python -m pip install --progress-bar off -e . --no-deps
	touch $@

lint: install
	$(BIN)/ruff check .

# The loss kernels are compiled once, into numba's on-disk cache, before the two pytest workers start; a fresh
# clone would otherwise have both workers and the platforms' model steps compile the same functions at once.
test: lint chromium
	$(BIN)/perilflow warm-up
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

# Starts the local platform in .perilflow/ (left running: `$(BIN)/perilflow platform stop` ends it) and runs the
# bundled demo model through the REST API. A second `make demo` reuses the platform, the model and the portfolio.
demo: install
	$(BIN)/perilflow demo $(DEMO_ARGS)

# Debian's chromium for the web UI test (tests/ui/test_ui_chromium.py drives it with Playwright, which never
# downloads a browser); installed only when missing, with sudo when not root.
chromium:
	@command -v chromium >/dev/null 2>&1 || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get install -y chromium || { $$SUDO apt-get update && $$SUDO apt-get install -y chromium; }; }

bench: install
	$(BIN)/python -m benchmarks.fm_bench

# Rewrite constraints.txt from the venv, keeping its header comment; perilflow itself is left out.
freeze: install
	sed -n '/^#/!q;p' constraints.txt > constraints.txt.new
	$(BIN)/python -m pip freeze --exclude-editable --exclude perilflow >> constraints.txt.new
	mv constraints.txt.new constraints.txt
	touch $(STAMP)  # the venv is exactly what constraints.txt now says

# Removes build and tool output only; local platform state (.perilflow/) is kept.
clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache constraints.txt.new
	find . -path ./.git -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
