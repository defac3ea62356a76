# One task runner for the project. `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SHARED ?= ../shared

.PHONY: install run test lint fmt bench bench-ingest clean

install: $(STAMP)

# torch first, pinned to the CPU build: an unpinned torch pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: install
	$(BIN)/rag ingest
	$(BIN)/rag ask "莱芜区上半年实际使用外资多少？"

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check .

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: bench-ingest

bench-ingest: install
	$(BIN)/python bench/ingest_throughput.py $(SHARED)/benchmarks/crud-news/docs.jsonl.gz --records 2000

clean:
	rm -rf data .pytest_cache
