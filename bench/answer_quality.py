"""Retrieval and answer quality, refusal calibration and latency, from one run.

Usage:
    python bench/answer_quality.py ../shared/benchmarks/rgb-dev [--project evals/project.jsonl]

Indexes the set's docs.jsonl into its own collection (cached by content hash; the first
run embeds ~11k chunks, 11-12 minutes on 2 cores), then, with the models loaded:
- one table of dense-only, BM25-only and hybrid retrieval, each answered by the
  extractive answerer, beside the naive baseline (first 300 characters of the top two
  dense passages): hit@1, hit@5, MRR@10, answer accuracy, median answer length;
- refusal trade-off: the evidence score of each rgb question asked normally and asked
  with its gold passages filtered out (as if not indexed), and of the project set's
  answerable and must-refuse questions (over corpus/), for a grid of thresholds;
- latency p50/p95 of a plain langchain-chroma `similarity_search` on the same index,
  of hybrid retrieval, and of retrieval + answer; ratios against the plain search.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from rag.answer import ExtractiveAnswerer, score_sentences
from rag.chain import SUPPORT_PASSAGES, Assistant, open_index
from rag.config import Settings
from rag.evaluate import load_questions, open_set_index, run, summarise
from rag.index import Filters
from rag.ingest import ingest
from rag.metrics import answer_correct, percentile
from rag.retrieve import HybridRetriever, Mode


def evidence_of(assistant: Assistant, question: str, filters: Filters | None = None) -> float:
    """What the answerer compares with its refusal threshold, for this question."""
    answerer = assistant.answerer
    hits = assistant.retriever.search(question, SUPPORT_PASSAGES, filters)
    return answerer.evidence(
        score_sentences(question, hits, answerer.idf, assistant.k, answerer.weights)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("set_dir", type=Path)
    parser.add_argument("--project", type=Path, default=Path("evals/project.jsonl"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/answer_quality.json"))
    args = parser.parse_args()

    settings = Settings()
    index, report = open_set_index(settings, args.set_dir)
    print(
        f"set corpus: {report.added + report.updated} embedded, {report.unchanged} cached "
        f"({report.seconds:.1f} s)",
        flush=True,
    )
    questions = load_questions(args.set_dir / "questions.jsonl")
    answerer = ExtractiveAnswerer(
        idf=index.lexical.idf,
        max_chars=settings.answer_max_chars,
        refusal_threshold=settings.refusal_threshold,
    )
    results: dict = {
        "settings": {
            "k": settings.k,
            "answer_max_chars": settings.answer_max_chars,
            "refusal_threshold": settings.refusal_threshold,
        }
    }

    # -- the table -------------------------------------------------------------------------
    table = {}
    for mode in (Mode.DENSE, Mode.LEXICAL, Mode.HYBRID):
        assistant = Assistant(HybridRetriever(index=index, mode=mode), answerer, settings.k)
        rows = run(assistant.ask, questions)
        table[mode.value] = summarise(rows)
        print(mode.value, json.dumps(table[mode.value], ensure_ascii=False), flush=True)
        if mode is Mode.DENSE:
            naive = []
            dense = HybridRetriever(index=index, mode=Mode.DENSE)
            for q in questions:
                text = "".join(h.chunk.text for h in dense.search(q.question, 2))[:300]
                naive.append((answer_correct(text, q.answers), len(text)))
            table["naive"] = {
                "answer_acc": round(statistics.fmean(c for c, _ in naive), 4),
                "answer_chars_p50": percentile([n for _, n in naive], 50),
            }
    results["table"] = table

    # -- refusal trade-off -------------------------------------------------------------------
    hybrid = Assistant(HybridRetriever(index=index), answerer, settings.k)
    with_gold = [evidence_of(hybrid, q.question) for q in questions]
    without_gold = [
        evidence_of(hybrid, q.question, Filters(exclude_docs=frozenset(q.gold_docs)))
        for q in questions
    ]
    project_answerable, project_refuse = [], []
    if args.project.is_file():
        corpus_index = open_index(settings)
        ingest([settings.corpus_dir], corpus_index, settings.chunk_size, settings.chunk_overlap)
        corpus_answerer = ExtractiveAnswerer(idf=corpus_index.lexical.idf)
        corpus = Assistant(HybridRetriever(index=corpus_index), corpus_answerer, settings.k)
        for q in load_questions(args.project):
            if q.out_of_scope:
                continue  # refused or caveated (rag.scope): not the threshold's to decide
            (project_refuse if q.expect_refusal else project_answerable).append(
                evidence_of(corpus, q.question)
            )
    grid = []
    for threshold in np.round(np.arange(0.80, 1.10, 0.01), 2):
        grid.append(
            {
                "threshold": float(threshold),
                "rgb_answerable_refused": round(float(np.mean(np.array(with_gold) < threshold)), 3),
                "rgb_gold_removed_answered": round(
                    float(np.mean(np.array(without_gold) >= threshold)), 3
                ),
                "project_answerable_refused": round(
                    float(np.mean(np.array(project_answerable) < threshold)), 3
                )
                if project_answerable
                else None,
                "project_refusals_answered": round(
                    float(np.mean(np.array(project_refuse) >= threshold)), 3
                )
                if project_refuse
                else None,
            }
        )
    results["refusal"] = {
        "evidence": {
            "rgb": with_gold,
            "rgb_gold_removed": without_gold,
            "project_answerable": project_answerable,
            "project_refuse": project_refuse,
        },
        "grid": grid,
    }

    # -- latency -----------------------------------------------------------------------------
    store = index.store.vectorstore  # plain langchain-chroma, as a baseline
    store.similarity_search(questions[0].question, k=settings.k)  # warm
    plain, retrieval, full = [], [], []
    for q in questions:
        t = time.perf_counter()
        store.similarity_search(q.question, k=settings.k)
        plain.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        hybrid.retriever.search(q.question, SUPPORT_PASSAGES)
        retrieval.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        hybrid.ask(q.question)
        full.append((time.perf_counter() - t) * 1000)
    latency = {}
    for name, values in (
        ("plain_similarity_search", plain),
        ("hybrid_retrieval", retrieval),
        ("retrieve_and_answer", full),
    ):
        latency[name] = {
            "p50": round(percentile(values, 50), 1),
            "p95": round(percentile(values, 95), 1),
        }
    for name in ("hybrid_retrieval", "retrieve_and_answer"):
        latency[name]["ratio_p50"] = round(
            latency[name]["p50"] / latency["plain_similarity_search"]["p50"], 2
        )
        latency[name]["ratio_p95"] = round(
            latency[name]["p95"] / latency["plain_similarity_search"]["p95"], 2
        )
    results["latency_ms"] = latency

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, ensure_ascii=False, indent=2), "utf-8")
    print_report(results)


def print_report(results: dict) -> None:
    t = results["table"]
    print("\n| retrieval | hit@1 | hit@5 | MRR@10 | answer acc | median answer chars |")
    print("|---|---|---|---|---|---|")
    for mode in ("dense", "lexical", "hybrid"):
        m = t[mode]
        print(
            f"| {mode} | {m['hit@1']:.2f} | {m['hit@5']:.2f} | {m['mrr@10']:.3f} | "
            f"{m['answer_acc']:.2f} | {m['answer_chars_p50']:.0f} |"
        )
    print(
        f"| naive (top-2 dense, 300 chars) | | | | {t['naive']['answer_acc']:.2f} | "
        f"{t['naive']['answer_chars_p50']:.0f} |"
    )
    print(
        "\n| threshold | rgb answerable refused | rgb gold-removed answered | project answerable refused | project refusals answered |"
    )
    print("|---|---|---|---|---|")
    for g in results["refusal"]["grid"]:
        print(
            f"| {g['threshold']:.2f} | {g['rgb_answerable_refused']} | {g['rgb_gold_removed_answered']} | "
            f"{g['project_answerable_refused']} | {g['project_refusals_answered']} |"
        )
    print("\nlatency ms:", json.dumps(results["latency_ms"]))


if __name__ == "__main__":
    main()
