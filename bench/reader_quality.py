"""The reading model against today's excerpts: answers, refusal calibration and latency.

Usage:
    RAG_DATA_DIR=data/bench python bench/reader_quality.py ../shared/benchmarks/policy-dev \\
        [--reader rag/models/reader] [--project evals/project.jsonl] [--limit N] [--out FILE]

One retrieval setup (the product's hybrid), two answerers built as `rag serve` builds them:
`RAG_READER=none` (sentence excerpts) and the reading model with its refusal threshold at
0, so each answer's confidence is known and every threshold can be scored from one run:

- the metrics of `rag eval` for both (answer_acc, answer_first_acc, answer_chars_p50 …),
  the reader's at the configured threshold;
- refusal trade-off over a grid of thresholds: answerable questions refused, questions
  asked with their gold passages filtered out (as if never indexed) that are still
  answered, and on the project set (over corpus/) must-refuse questions answered;
- latency with nothing else running: plain dense search (langchain-chroma's
  similarity_search) and retrieve + read, p50/p95, and their ratio.

Benchmark questions only select (thresholds, depth); nothing here trains.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from rag.chain import build_assistant, open_index
from rag.config import Settings
from rag.evaluate import load_questions, open_set_index, score, summarise
from rag.index import Filters
from rag.ingest import ingest
from rag.metrics import percentile

GRID = [round(x, 2) for x in np.arange(0.0, 1.0, 0.05)]


def ask_all(assistant, questions, filters=None):
    rows, confidences, latencies = [], [], []
    assistant.ask(questions[0].question)  # warm-up: models and indexes loaded
    for q in questions:
        started = time.perf_counter()
        answer = assistant.ask(q.question, filters=filters(q) if filters else None)
        ms = (time.perf_counter() - started) * 1000
        rows.append(score(q, answer, ms))
        confidences.append(answer.confidence if answer.confidence is not None else 0.0)
        latencies.append(ms)
    return rows, confidences, latencies


def at_threshold(rows, confidences, threshold: float):
    """The rows as a reader with this refusal threshold would have answered them."""
    from dataclasses import replace

    out = []
    for row, conf in zip(rows, confidences, strict=True):
        if conf < threshold and not row.refused:
            row = replace(row, refused=True, correct=row.expect_refusal, first_correct=False)
        out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("set_dir", type=Path)
    parser.add_argument("--reader", default="bundled")
    parser.add_argument("--project", type=Path, default=Path("evals/project.jsonl"))
    parser.add_argument("--limit", type=int, default=0, help="first N questions only")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    settings = Settings()
    index, _ = open_set_index(settings, args.set_dir)
    questions = load_questions(args.set_dir / "questions.jsonl")
    if args.limit:
        questions = questions[: args.limit]
    excerpt = build_assistant(settings.model_copy(update={"reader": "none"}), index)
    reading = build_assistant(
        settings.model_copy(update={"reader": args.reader, "reader_refusal_threshold": 0.0}),
        index,
    )
    results: dict = {"set": str(args.set_dir), "reader": args.reader, "n": len(questions)}

    rows, _, _ = ask_all(excerpt, questions)
    results["none"] = summarise(rows)
    print("none  ", json.dumps(results["none"], ensure_ascii=False), flush=True)
    rows, conf, latencies = ask_all(reading, questions)
    threshold = settings.reader_refusal_threshold
    results["reader"] = summarise(at_threshold(rows, conf, threshold))
    results["reader"]["threshold"] = threshold
    print("reader", json.dumps(results["reader"], ensure_ascii=False), flush=True)

    with_gold = [q for q in questions if q.gold_docs]
    _, removed_conf, _ = ask_all(
        reading, with_gold, filters=lambda q: Filters(exclude_docs=frozenset(q.gold_docs))
    )
    project_rows, project_conf = [], []
    if args.project.is_file():
        corpus_index = open_index(settings)
        ingest([settings.corpus_dir], corpus_index, settings.chunk_size, settings.chunk_overlap)
        corpus = build_assistant(
            settings.model_copy(update={"reader": args.reader, "reader_refusal_threshold": 0.0}),
            corpus_index,
        )
        project = [q for q in load_questions(args.project) if not q.out_of_scope]
        project_rows, project_conf = ask_all(corpus, project)[:2]
    grid = []
    for t in GRID:
        scored = summarise(at_threshold(rows, conf, t))
        line = {
            "threshold": t,
            "answer_acc": scored["answer_acc"],
            "answer_first_acc": scored["answer_first_acc"],
            "answerable_refused": round(float(np.mean(np.array(conf) < t)), 3),
            "gold_removed_answered": round(float(np.mean(np.array(removed_conf) >= t)), 3),
        }
        if project_rows:
            p = summarise(at_threshold(project_rows, project_conf, t))
            must = [c for r, c in zip(project_rows, project_conf, strict=True) if r.expect_refusal]
            line |= {
                "project_refusal_acc": p["refusal_acc"],
                "project_answer_acc": p["answer_acc"],
                "project_must_refuse_answered": round(float(np.mean(np.array(must) >= t)), 3)
                if must
                else None,
            }
        grid.append(line)
    results["grid"] = grid
    print(
        "\n| threshold | answer_acc | first_acc | answerable refused | gold removed answered |"
        " project refusal_acc | project answer_acc |"
    )
    print("|---|---|---|---|---|---|---|")
    for g in grid:
        print(
            f"| {g['threshold']:.2f} | {g['answer_acc']} | {g['answer_first_acc']} | "
            f"{g['answerable_refused']} | {g['gold_removed_answered']} | "
            f"{g.get('project_refusal_acc')} | {g.get('project_answer_acc')} |"
        )

    store = index.store.vectorstore
    store.similarity_search(questions[0].question, k=settings.k)
    plain = []
    for q in questions:
        t = time.perf_counter()
        store.similarity_search(q.question, k=settings.k)
        plain.append((time.perf_counter() - t) * 1000)
    latency = {
        "plain_similarity_search": {"p50": percentile(plain, 50), "p95": percentile(plain, 95)},
        "retrieve_and_read": {
            "p50": percentile(latencies, 50),
            "p95": percentile(latencies, 95),
        },
    }
    latency["ratio_p95"] = round(
        latency["retrieve_and_read"]["p95"] / latency["plain_similarity_search"]["p95"], 2
    )
    results["latency_ms"] = latency
    print("\nlatency ms:", json.dumps(latency))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, ensure_ascii=False, indent=2), "utf-8")


if __name__ == "__main__":
    main()
