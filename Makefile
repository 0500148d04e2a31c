# The two commands of the set-up promise: `make demo` and `make test`. Each creates or reuses the virtual
# environment, installs what it needs (idempotently), then runs. torch==2.13.0 goes in first, before
# anything that depends on torch, because an unpinned torch pulls several GB of CUDA packages; a torch
# already in the environment is kept.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
SYSTEM_PACKAGES := tesseract-ocr tesseract-ocr-eng
BENCH_PACKAGES := poppler-utils
# the report's browser test opens the evaluation report in headless Chromium
TEST_PACKAGES := chromium fonts-dejavu-core
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# llama-cpp-python compiles from source (~7 min on 2 cores, once: pip caches the wheel); these flags make
# a portable build (AVX2/FMA/F16C, no -march=native).
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: demo test test-fast bench bench-verify bench-mining bench-rerank lint system-deps clean

demo: $(VENV)/.installed-demo system-deps
	$(BIN)/docrerank demo

# the whole suite on one pytest-xdist worker per core, files dealt whole (the slowest tests listed at the end);
# `make test-fast`: the tests not marked slow
test: $(VENV)/.installed-dev system-deps
	scripts/system-deps.sh $(TEST_PACKAGES)
	$(BIN)/python -m pytest -n auto --dist loadfile --durations=25 $(PYTEST_ARGS)

test-fast: $(VENV)/.installed-dev system-deps
	scripts/system-deps.sh $(TEST_PACKAGES)
	$(BIN)/python -m pytest -n auto --dist loadfile -m "not slow" $(PYTEST_ARGS)

bench: $(VENV)/.installed-dev system-deps
	scripts/system-deps.sh $(BENCH_PACKAGES)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/backends.py

# the verifier on the labeled pairs, both embedded models (~45 min the first time on 2 cores, then cached)
bench-verify: $(VENV)/.installed-dev system-deps
	$(BIN)/python bench/verify.py

# mining vs sentence-transformers' mine_hard_negatives, and dense search at 10^5 / 10^6 vectors (~20 min);
# faiss-cpu (optional) adds the approximate-index rows
bench-mining: $(VENV)/.installed-dev system-deps
	$(BIN)/pip install -q "faiss-cpu>=1.8"
	$(BIN)/python bench/mining.py

# reranker scoring vs CrossEncoder.predict, VLM batching, training pairs/s (~12 min on 2 cores)
bench-rerank: $(VENV)/.installed-dev system-deps
	$(BIN)/python bench/rerank.py

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench

system-deps:
	@scripts/system-deps.sh $(SYSTEM_PACKAGES)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH)"
	@touch $@

# every extra that runs on a CPU, so the README's commands after the demo (retrieve, rerank, evaluate,
# evaluate-verifier's plot, serve) find their packages; not colpali/gpu (GPU) nor train (its trainers)
DEMO_EXTRAS := llamacpp,data,embed,retrieval,report,serve,eval,viewer,onnx

$(VENV)/.installed-demo: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install -q -e ".[$(DEMO_EXTRAS)]"
	@touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install -q -e ".[dev]"
	# colpali-engine without its torchvision (CUDA-only wheels on PyPI; page images do not need it)
	$(BIN)/pip install -q --no-deps "colpali-engine==0.3.18"
	@touch $@ $(VENV)/.installed-demo

clean:
	rm -rf $(VENV) runs .pytest_cache
