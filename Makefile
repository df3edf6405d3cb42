# Kinema: `make demo` sets up and generates a video; `make test` sets up and runs the tests.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROMPT ?= a red ball bounces on a light background
OUT ?= out/demo.mp4

.PHONY: setup demo test test-slow default-model lock clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11'"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	@touch $(STAMP)

demo: setup
	$(BIN)/kinema generate "$(PROMPT)" -o $(OUT)

test: setup
	bash scripts/install_browser.sh || [ -z "$$KINEMA_REQUIRE_BROWSER" ]  # without Chromium the browser test skips, except in CI
	$(BIN)/python -m pytest

test-slow: setup
	$(BIN)/python -m pytest -m slow

# Retrain the bundled default model from scratch (resumable; about two hours on a 2-core CPU).
default-model: setup
	bash scripts/train_default_model.sh

# Re-pin every transitive dependency after changing pyproject.toml.
lock:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^kinema' > constraints.txt

clean:
	rm -rf $(VENV) out .pytest_cache
