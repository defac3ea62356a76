"""The reading model against today's excerpts: answers, refusal calibration and latency.

Usage:
    RAG_DATA_DIR=data/bench python bench/reader_quality.py ../shared/benchmarks/policy-dev \\
        [--reader rag/models/reader] [--weights 0,0.25,0.5,1,100] [--project evals/project.jsonl]
        [--limit N] [--out FILE]

One retrieval setup (the product's hybrid), answerers built as `rag serve` builds them:
`RAG_READER=none` (sentence excerpts) and the reading model at each weight its confidence
gets against the excerpt score (the model reads each question once: the reader keeps its recent
readings), with refusal off, so every refusal rule can be scored from one run:

- the metrics of `rag eval` for each (answer_acc, answer_first_acc, answer_chars_p50 …);
- refusal trade-off over a grid of (reader confidence, excerpt evidence) thresholds:
  answerable questions refused, questions asked with their gold passages filtered out (as
  if never indexed) still answered, and on the project set (over corpus/) must-refuse
  questions answered;
- latency with nothing else running: plain dense search (langchain-chroma's
  similarity_search) and retrieve + read, p50/p95, and their ratio.

Benchmark questions only select (weights, thresholds); nothing here trains.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from rag.chain import build_assistant, open_index
from rag.config import Settings
from rag.evaluate import load_questions, open_set_index, score, summarise
from rag.index import Filters
from rag.ingest import ingest
from rag.metrics import percentile

CONFIDENCE_GRID = [0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5]
EVIDENCE_GRID = [0.0, 0.8, 0.83, 0.86, 0.88, 0.9]


def ask_all(assistant, questions, filters=None):
    """Rows, refusal signals and latencies of asking each question once."""
    rows, signals, latencies = [], [], []
    for q in questions:
        started = time.perf_counter()
        answer = assistant.ask(q.question, filters=filters(q) if filters else None)
        ms = (time.perf_counter() - started) * 1000
        rows.append(score(q, answer, ms))
        # No signals: answered by a path these thresholds do not gate (an asked-for
        # article is quoted whole), or already refused (a document number none bears).
        signals.append(answer.signals or {"confidence": float("inf"), "evidence": float("inf")})
        latencies.append(ms)
    return rows, signals, latencies


def refused_at(signal: dict, t_conf: float, t_evidence: float) -> bool:
    return signal["confidence"] < t_conf or signal["evidence"] < t_evidence


def at_thresholds(rows, signals, t_conf: float, t_evidence: float):
    """The rows as the reader with these refusal thresholds would have answered them."""
    out = []
    for row, signal in zip(rows, signals, strict=True):
        if not row.refused and refused_at(signal, t_conf, t_evidence):
            row = replace(row, refused=True, correct=row.expect_refusal, first_correct=False)
        out.append(row)
    return out


def share(signals, t_conf, t_evidence, answered: bool = True) -> float | None:
    if not signals:
        return None
    hits = [refused_at(s, t_conf, t_evidence) != answered for s in signals]
    return round(float(np.mean(hits)), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("set_dir", type=Path)
    parser.add_argument("--reader", default="bundled")
    parser.add_argument("--weights", default="0,0.25,0.5,1,100")
    parser.add_argument("--project", type=Path, default=Path("evals/project.jsonl"))
    parser.add_argument("--limit", type=int, default=0, help="first N questions only")
    parser.add_argument(
        "--lead-chars", type=int, help="try another cut for long lead sentences (rag.reading)"
    )
    parser.add_argument(
        "--context-chars", type=int, help="try another room for sentences after the lead"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import rag.reading

    if args.lead_chars:
        rag.reading.LEAD_CHARS = args.lead_chars
    settings = Settings()
    index, _ = open_set_index(settings, args.set_dir)
    questions = load_questions(args.set_dir / "questions.jsonl")
    if args.limit:
        questions = questions[: args.limit]
    open_ended = {"reader": args.reader, "reader_refusal_threshold": 0.0, "refusal_threshold": -9.0}
    excerpt = build_assistant(settings.model_copy(update={"reader": "none"}), index)
    reading = build_assistant(settings.model_copy(update=open_ended), index)
    if args.context_chars is not None:
        reading.answerer.context_chars = args.context_chars
    excerpt.ask(questions[0].question), reading.ask(questions[0].question)  # models loaded
    results: dict = {"set": str(args.set_dir), "reader": args.reader, "n": len(questions)}

    rows, _, plain_ms = ask_all(excerpt, questions)
    results["none"] = summarise(rows)
    print("none", json.dumps(results["none"], ensure_ascii=False), flush=True)
    default_weight = reading.answerer.reader_weight
    weights = [float(w) for w in args.weights.split(",")]
    by_weight = {}
    for weight in weights:
        reading.answerer.reader_weight = weight
        rows_w, signals_w, latencies_w = ask_all(reading, questions)
        by_weight[weight] = (rows_w, signals_w, latencies_w)
        summary = summarise(rows_w)
        results[f"reader@{weight}"] = summary
        print(f"reader@{weight}", json.dumps(summary, ensure_ascii=False), flush=True)
    reading.answerer.reader_weight = default_weight
    if default_weight not in by_weight:
        by_weight[default_weight] = ask_all(reading, questions)
    rows, signals, _ = by_weight[default_weight]
    first_latencies = by_weight[weights[0]][2]  # the run that read every question afresh

    with_gold = [q for q in questions if q.gold_docs]
    _, removed, _ = ask_all(
        reading, with_gold, filters=lambda q: Filters(exclude_docs=frozenset(q.gold_docs))
    )
    project_rows, project_signals = [], []
    if args.project.is_file():
        corpus_index = open_index(settings)
        ingest([settings.corpus_dir], corpus_index, settings.chunk_size, settings.chunk_overlap)
        corpus = build_assistant(settings.model_copy(update=open_ended), corpus_index)
        project = [q for q in load_questions(args.project) if not q.out_of_scope]
        project_rows, project_signals, _ = ask_all(corpus, project)
    must = [s for r, s in zip(project_rows, project_signals, strict=True) if r.expect_refusal]
    grid = []
    for t_conf in CONFIDENCE_GRID:
        for t_ev in EVIDENCE_GRID:
            scored = summarise(at_thresholds(rows, signals, t_conf, t_ev))
            line = {
                "confidence": t_conf,
                "evidence": t_ev,
                "answer_acc": scored["answer_acc"],
                "answer_first_acc": scored["answer_first_acc"],
                "answerable_refused": share(signals, t_conf, t_ev, answered=False),
                "gold_removed_answered": share(removed, t_conf, t_ev),
            }
            if project_rows:
                p = summarise(at_thresholds(project_rows, project_signals, t_conf, t_ev))
                line |= {
                    "project_refusal_acc": p["refusal_acc"],
                    "project_answer_acc": p["answer_acc"],
                    "project_must_refuse_answered": share(must, t_conf, t_ev),
                }
            grid.append(line)
    results["grid"] = grid
    print(
        "\n| confidence ≥ | evidence ≥ | answer_acc | first_acc | answerable refused |"
        " gold removed answered | project refusal_acc | project answer_acc |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for g in grid:
        print(
            f"| {g['confidence']} | {g['evidence']} | {g['answer_acc']} | {g['answer_first_acc']} "
            f"| {g['answerable_refused']} | {g['gold_removed_answered']} | "
            f"{g.get('project_refusal_acc')} | {g.get('project_answer_acc')} |"
        )

    store = index.store.vectorstore
    plain = []
    for q in questions:
        t = time.perf_counter()
        store.similarity_search(q.question, k=settings.k)
        plain.append((time.perf_counter() - t) * 1000)
    latency = {
        "plain_similarity_search": {"p50": percentile(plain, 50), "p95": percentile(plain, 95)},
        "retrieve_and_excerpt": {"p50": percentile(plain_ms, 50), "p95": percentile(plain_ms, 95)},
        "retrieve_and_read": {
            "p50": percentile(first_latencies, 50),
            "p95": percentile(first_latencies, 95),
        },
    }
    latency["read_vs_plain_p95"] = round(
        latency["retrieve_and_read"]["p95"] / latency["plain_similarity_search"]["p95"], 2
    )
    results["latency_ms"] = latency
    print("\nlatency ms:", json.dumps(latency))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, ensure_ascii=False, indent=2), "utf-8")


if __name__ == "__main__":
    main()
