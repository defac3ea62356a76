# One task runner for the project. `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
TORCH  ?= 2.13.0
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SHARED ?= ../shared

.PHONY: install run test bundle model eval-gate eval-baseline lint fmt bench bench-ingest bench-scale bench-quality clean

install: $(STAMP)

# torch first, pinned to the CPU build: an unpinned torch pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==$(TORCH)
	$(BIN)/pip install --quiet -e '.[web,llm,dev,train]'
	touch $(STAMP)

# Index corpus/ (incremental: seconds when nothing changed) and serve the chat and API.
run: install
	$(BIN)/rag ingest
	$(BIN)/rag serve

# The OpenID Connect provider the sign-in tests run (node; pinned by its lock file).
tests/oidc/node_modules/.installed: tests/oidc/package-lock.json
	npm ci --prefix tests/oidc --silent --no-audit --no-fund
	touch $@

# The offline installer for air-gapped machines (needs the registries once, here):
# dist/policy-rag-<version>-<python>-<platform>.tar.gz; see README "Offline installation".
bundle: install
	$(BIN)/python packaging/build_bundle.py --torch $(TORCH)

test: install tests/oidc/node_modules/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q
	$(MAKE) eval-gate

# The project's own eval set over corpus/, with the thresholds in evals/project.toml:
# a retrieval or answering regression turns CI red. Its own data dir, so it never
# touches the index `make run` uses.
eval-gate: install
	RAG_DATA_DIR=data/eval-gate $(BIN)/rag ingest corpus
	RAG_DATA_DIR=data/eval-gate $(BIN)/rag eval evals/project.jsonl --out data/eval-gate/report

# Refresh evals/project.baseline.json, the accepted run that examples/ci/ compares every
# question with, in the commit of a change meant to move questions (review its diff).
eval-baseline: install
	RAG_DATA_DIR=data/eval-gate $(BIN)/rag ingest corpus
	RAG_DATA_DIR=data/eval-gate $(BIN)/rag eval evals/project.jsonl --out data/eval-gate/baseline
	cp data/eval-gate/baseline/report.json evals/project.baseline.json

lint: install
	$(BIN)/ruff check .

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: bench-ingest bench-quality

bench-ingest: install
	$(BIN)/python bench/ingest_throughput.py $(SHARED)/benchmarks/crud-news/docs.jsonl.gz --records 2000

# Index size, server memory, answer latency and one-document ingest at 10k and 100k chunks
# (most of them synthetic: real vectors + noise; data dirs in /tmp/scale-bench; ~20 min).
bench-scale: install
	$(BIN)/python bench/scale.py --benchmarks $(SHARED)/benchmarks --sizes 10000,100000

# Retrieval/answer table, refusal trade-off and latency on rgb-dev (first run ~12 min).
bench-quality: install
	RAG_DATA_DIR=data/bench $(BIN)/python bench/answer_quality.py $(SHARED)/benchmarks/rgb-dev

# Train the reading model from $(SHARED)/training and write rag/models/reader-model/ (resumable:
# run it again after a stop; checkpoints under ~/.cache/policy-rag/reader; hours on 2 cores).
model: install
	$(BIN)/python -m rag.models.train_reader --training-dir $(SHARED)/training $(MODEL_ARGS)

clean:
	rm -rf data .pytest_cache
