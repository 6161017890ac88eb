# Set-up is part of every target: a fresh clone needs only Python 3.11 and make.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

.PHONY: setup train test test-fast lint bench browser
setup: $(STAMP)

# The page's test drives Debian's chromium: installed once (as root, with apt-get);
# elsewhere it is left to you and that test skips (it fails instead when CI is set).
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "note: no chromium + chromedriver: the browser test will skip"; fi

train: $(STAMP)
	$(VENV)/bin/python launch/train.py --config=experiments/fashion_cnn.py --workdir=runs/fashion_cnn

# One pytest worker per core (pytest-xdist): the suite is mostly single-threaded compiles.
test: $(STAMP) browser
	$(VENV)/bin/python -m pytest -q -n auto --dist worksteal --durations=15

test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n auto --dist worksteal -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(VENV)/bin/python bench/fashion_cnn.py
