"""How to rerank with the reading model: candidates, features, and rules fitted with
cross-validation (issue 33).

Usage:
    RAG_DATA_DIR=data/bench python bench/rerank_fit.py ../shared/benchmarks/policy-dev \\
        ../shared/benchmarks/rgb-dev [--reader rag/models/reader-model] [--depth 10] [--out FILE]

For every question of every set: the hybrid's first `--depth` passages (and where each leg
ranked them), each read by the model (its confidence that the passage answers), and which
are gold. Then, for each rule and each candidate depth, hit@1 / hit@5 / MRR@10 of the
reordered list — the rule's weight chosen on one half of the questions and scored on the
other (2-fold, both ways, averaged), per set and over both sets together, beside the
hybrid order and each leg alone. Benchmark questions select the rule; nothing trains.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path

import numpy as np

from rag.chain import SUPPORT_PASSAGES, build_assistant
from rag.config import Settings
from rag.evaluate import load_questions, open_set_index
from rag.metrics import first_gold_rank, hit_at, reciprocal_rank
from rag.models.reader import passage_text
from rag.retrieve import HybridRetriever, Mode

WEIGHTS = [0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 100.0]


def collect(set_dir: Path, settings: Settings, reader_setting: str, depth: int) -> list[dict]:
    index, _ = open_set_index(settings, set_dir)
    assistant = build_assistant(settings.model_copy(update={"reader": reader_setting}), index)
    reader = assistant.answerer.reader
    legs = {m: HybridRetriever(index=index, mode=m) for m in (Mode.DENSE, Mode.LEXICAL)}
    rows = []
    for q in load_questions(set_dir / "questions.jsonl"):
        if not q.gold_docs:
            continue
        hits = assistant.retriever.search(q.question, max(depth, SUPPORT_PASSAGES))
        readings = {
            r.passage: r for r in reader.read(q.question, [passage_text(h) for h in hits[:depth]])
        }
        rows.append(
            {
                "set": set_dir.name,
                "id": q.id,
                "gold": q.gold_docs,
                "docs": [[h.chunk.doc_id, *h.also_in] for h in hits],
                "fused": [h.score for h in hits],
                "confidence": [
                    readings[i].confidence if i in readings else 0.0 for i in range(len(hits))
                ],
                "has_answer": [
                    readings[i].has_answer if i in readings else 0.0 for i in range(len(hits))
                ],
                "legs": {
                    m.value: [[h.chunk.doc_id, *h.also_in] for h in leg.search(q.question, 10)]
                    for m, leg in legs.items()
                },
            }
        )
    return rows


def order(row: dict, rule: str, weight: float, depth: int) -> list[list[str]]:
    """The candidates' documents in the order the rule gives (the first `depth` reordered)."""
    n = min(depth, len(row["docs"]))
    fused = np.array(row["fused"][:n])
    span = fused.max() - fused.min() or 1.0
    prior = {
        "fused": (fused - fused.min()) / span,  # the hybrid's score, scaled to 0–1 per question
        "rank": 1.0 / (1.0 + np.arange(n)),  # the hybrid's rank alone
    }[rule]
    value = prior + weight * np.array(row["confidence"][:n])
    top = [row["docs"][i] for i in np.argsort(-value, kind="stable")]
    return top + row["docs"][n:]


def scores(rows: list[dict], ranked: list[list[list[str]]]) -> dict:
    ranks = [first_gold_rank(r, row["gold"]) for r, row in zip(ranked, rows, strict=True)]
    return {
        "hit@1": round(statistics.fmean(hit_at(r, 1) for r in ranks), 4),
        "hit@5": round(statistics.fmean(hit_at(r, 5) for r in ranks), 4),
        "mrr@10": round(statistics.fmean(reciprocal_rank(r, 10) for r in ranks), 4),
    }


def cross_validated(rows: list[dict], rule: str, depth: int, seed: int = 0) -> dict:
    """Each half scored with the weight that did best (by MRR@10) on the other half."""
    idx = list(range(len(rows)))
    random.Random(seed).shuffle(idx)
    halves = [idx[: len(idx) // 2], idx[len(idx) // 2 :]]
    ranked: list = [None] * len(rows)
    chosen = []
    for fit, test in ((halves[0], halves[1]), (halves[1], halves[0])):
        fit_rows = [rows[i] for i in fit]
        best = max(
            WEIGHTS,
            key=lambda w: scores(fit_rows, [order(r, rule, w, depth) for r in fit_rows])["mrr@10"],
        )
        chosen.append(best)
        for i in test:
            ranked[i] = order(rows[i], rule, best, depth)
    return {**scores(rows, ranked), "weights": chosen}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("sets", type=Path, nargs="+")
    parser.add_argument("--reader", default="bundled")
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    settings = Settings()
    rows = []
    for set_dir in args.sets:
        rows += collect(set_dir, settings, args.reader, args.depth)
    report: dict = {}
    groups = {s.name: [r for r in rows if r["set"] == s.name] for s in args.sets}
    groups["all"] = rows
    for name, group in groups.items():
        report[name] = {
            "hybrid": scores(group, [r["docs"] for r in group]),
            **{leg: scores(group, [r["legs"][leg] for r in group]) for leg in ("dense", "lexical")},
        }
        for rule in ("fused", "rank"):
            for depth in (4, 6, 8, 10):
                if depth <= args.depth:
                    report[name][f"{rule}+reader@{depth}"] = cross_validated(group, rule, depth)
        report[name]["reader alone@10"] = scores(
            group, [order(r, "rank", 100.0, args.depth) for r in group]
        )
        print(name, json.dumps(report[name], ensure_ascii=False), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps({"report": report, "rows": rows}, ensure_ascii=False), "utf-8"
        )


if __name__ == "__main__":
    main()
