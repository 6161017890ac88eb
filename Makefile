# Set-up is part of every target: a fresh clone needs only Python 3.11 and make.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

.PHONY: setup train test test-e2e lint bench browser device-bundle web-runtime
setup: $(STAMP)

# onnxruntime-web for launch/export.py --page (the generator page without a server): the
# three files the page runs, from npm (npm checks the registry's sha512; so does this),
# kept out of git (15 MB; its MIT licence is committed in jaxdl/export/static/vendor/).
ORT_WEB_VERSION := 1.31.1
ORT_WEB_SHA512 := e46787f9b590f87c4cd74cfb7ab1a5b16aabcabc0c6d2be6ff5b6422c2934f8f20d1f235f555d5542e37e6de2ded5b0f75241e4bb366b993d7ad0ef793cd9447
ORT_WEB := build/onnxruntime-web-$(ORT_WEB_VERSION)
ORT_WEB_FILES := ort.wasm.min.js ort-wasm-simd-threaded.mjs ort-wasm-simd-threaded.wasm
web-runtime:
	@if [ -f $(ORT_WEB)/.fetched ]; then :; \
	elif ! command -v npm >/dev/null; then \
		echo "note: no npm: launch/export.py --page needs $(ORT_WEB), its test will skip"; \
	else \
		tmp=$$(mktemp -d) && (cd $$tmp && npm pack --silent onnxruntime-web@$(ORT_WEB_VERSION) >/dev/null \
		&& echo "$(ORT_WEB_SHA512)  onnxruntime-web-$(ORT_WEB_VERSION).tgz" | sha512sum -c --quiet \
		&& tar xzf onnxruntime-web-$(ORT_WEB_VERSION).tgz package/package.json \
			$(addprefix package/dist/,$(ORT_WEB_FILES))) \
		&& mkdir -p $(ORT_WEB) && cp $$tmp/package/package.json $$tmp/package/dist/* $(ORT_WEB)/ \
		&& touch $(ORT_WEB)/.fetched \
		|| echo "note: could not fetch and check onnxruntime-web $(ORT_WEB_VERSION): the page test will skip"; \
		rm -rf $$tmp; \
	fi

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
# `test`: what you run while you work (every test but the end-to-end tier); `test-e2e`:
# the end-to-end tier (@pytest.mark.slow: launchers, sweeps and jobs in subprocesses).
# CI (.ci/run) runs both.
test: $(STAMP) browser web-runtime
	$(VENV)/bin/python -m pytest -q -n auto --dist worksteal -m "not slow" --durations=10

test-e2e: $(STAMP) browser web-runtime
	$(VENV)/bin/python -m pytest -q -n auto --dist worksteal -m slow --durations=15

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(VENV)/bin/python bench/fashion_cnn.py

# What bench/device_check.py needs on the GPU machine that it lacks (its docstring): wheels
# for Python 3.12 and the data sets, in .device/ (git-ignored; the device tool's carry).
device-bundle: $(STAMP)
	$(VENV)/bin/python bench/device_check.py --bundle
