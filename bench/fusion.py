"""Fusion rules compared offline on the candidate pools of real questions.

Usage:
    python bench/fusion.py ../shared/benchmarks/policy-dev ../shared/benchmarks/rgb-dev [--pool 30]

Each set's docs.jsonl is indexed as `rag eval` indexes it (cached). For every question the
candidate pool (dense top `--pool` ∪ BM25 top `--pool`) is read once with its features —
chunk cosine, best in-context sentence cosine, BM25 score, both ranks — and every rule
below then ranks the same pools: doc-level hit@1, hit@5 and MRR@10 after the retriever's
near-duplicate filter, as `rag eval` counts them. Retrieval only: answers need the
answerer (bench/answer_quality.py).
"""

from __future__ import annotations

import argparse
import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.config import Settings
from rag.evaluate import load_questions, open_set_index
from rag.index import Filters
from rag.lexical import bigram_set
from rag.metrics import first_gold_rank, hit_at, reciprocal_rank
from rag.retrieve import FusionWeights, about_other_years, distinct, fuse

HITS = 10  # what the chain retrieves (SUPPORT_PASSAGES) and `rag eval` ranks docs from


@dataclass
class Pool:
    question: str
    gold: list[str]
    docs: list[str]
    texts: list[str]
    chunk: np.ndarray  # cosine of the chunk vector
    sentence: np.ndarray  # best in-context sentence cosine
    bm25: np.ndarray  # raw BM25 (0 when outside the lexical top)
    dense_rank: np.ndarray  # 1-based by chunk + sentence over the whole pool (BM25's too)
    lexical_rank: np.ndarray
    other_year: np.ndarray
    coverage: np.ndarray  # idf-weighted share of the question's bigrams in the chunk
    idf_mass: float  # sum of the question's token idfs: the most BM25 can give per term hit


def pools_of(eval_set: Path, size: int) -> list[Pool]:
    """A folder set is indexed as `rag eval` indexes it; a questions file (the project set)
    runs against the index of the data dir, as `rag eval` runs it."""
    settings = Settings()
    index, _ = open_set_index(settings, eval_set)
    snapshot = index.snapshot()
    lexical = snapshot.lexical
    pools = []
    questions = eval_set / "questions.jsonl" if eval_set.is_dir() else eval_set
    for q in load_questions(questions):
        vector = np.asarray(index.embeddings.embed_query(q.question), np.float32)
        stored = {s.chunk.chunk_id: s for s in snapshot.dense_search(vector, size, Filters())}
        scores = lexical.scores(q.question)
        top = lexical.top(scores, size)
        missing = [cid for cid, _ in top if cid not in stored]
        for s in snapshot.get(missing, vector):
            stored[s.chunk.chunk_id] = s
        ids = list(stored)
        q_tokens = bigram_set(q.question)
        idf_mass = sum(lexical.idf(t) for t in q_tokens)
        chunk = np.array([stored[c].similarity for c in ids], np.float32)
        sentence_vectors = snapshot.sentence_vectors([stored[c] for c in ids])
        sentence = np.array(
            [
                float((v @ vector).max()) if v.size else stored[c].similarity
                for c, v in zip(ids, sentence_vectors, strict=True)
            ],
            np.float32,
        )
        bm25 = np.array(
            [float(scores[lexical.row[c]]) if c in lexical.row else 0.0 for c in ids], np.float32
        )
        dense_order = np.argsort(-(chunk + sentence), kind="stable")
        dense_rank = np.zeros(len(ids), int)
        dense_rank[dense_order] = np.arange(1, len(ids) + 1)
        lexical_rank = np.zeros(len(ids), int)
        for r, (cid, _) in enumerate(top, 1):
            lexical_rank[ids.index(cid)] = r
        pools.append(
            Pool(
                question=q.question,
                gold=q.gold_docs,
                docs=[stored[c].chunk.doc_id for c in ids],
                texts=[stored[c].chunk.text for c in ids],
                chunk=chunk,
                sentence=sentence,
                bm25=bm25,
                dense_rank=dense_rank,
                lexical_rank=lexical_rank,
                other_year=np.array(
                    [about_other_years(stored[c].chunk.text, q.question) for c in ids], np.float32
                ),
                coverage=lexical.coverage(q.question)[[lexical.row[c] for c in ids]],
                idf_mass=idf_mass,
            )
        )
    return pools


def ranked_docs(pool: Pool, scores: np.ndarray) -> list[tuple[str, ...]]:
    """Each hit's document and the documents of the near-duplicates collapsed into it, as
    the retriever returns them (`Hit.also_in`)."""
    order = np.argsort(-scores, kind="stable").tolist()
    return [(pool.docs[i], *also_in) for i, also_in in distinct(order, pool.texts, pool.docs, HITS)]


def evaluate(pools: list[Pool], rule: Callable[[Pool], np.ndarray]) -> dict[str, float]:
    ranks = [first_gold_rank(ranked_docs(p, rule(p)), p.gold) for p in pools]
    n = len(ranks)
    return {
        "hit@1": round(sum(hit_at(r, 1) for r in ranks) / n, 4),
        "hit@5": round(sum(hit_at(r, 5) for r in ranks) / n, 4),
        "mrr@10": round(sum(reciprocal_rank(r) for r in ranks) / n, 4),
    }


def minmax(x: np.ndarray) -> np.ndarray:
    span = float(x.max() - x.min()) if x.size else 0.0
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


def rrf(rank: np.ndarray, k: float) -> np.ndarray:
    return np.where(rank > 0, 1.0 / (k + rank), 0.0)


def margin(values: np.ndarray, k: int = 5) -> float:
    """Best minus k-th best: how decisively the leg singles out one candidate."""
    ranked = np.sort(values)[::-1]
    return float(ranked[0] - ranked[min(k, ranked.size) - 1])


def rules() -> dict[str, Callable[[Pool], np.ndarray]]:
    out: dict[str, Callable[[Pool], np.ndarray]] = {
        "dense (chunk)": lambda p: p.chunk,
        "dense (chunk + sentence)": lambda p: p.chunk + p.sentence,
        "bm25": lambda p: p.bm25,
        "today: chunk + sentence + 0.02 bm25/max": lambda p: (
            p.chunk
            + p.sentence
            + 0.02 * p.bm25 / max(float(p.bm25.max()), 1e-9)
            - 0.03 * p.other_year
        ),
    }
    for k in (5, 10, 30, 60):
        out[f"rrf k={k}"] = lambda p, k=k: rrf(p.dense_rank, k) + rrf(p.lexical_rank, k)
    for w in (0.1, 0.2, 0.3, 0.5, 1.0):
        out[f"minmax dense + {w} minmax bm25"] = lambda p, w=w: (
            minmax(p.chunk + p.sentence) + w * minmax(p.bm25) - 0.03 * p.other_year
        )
        # BM25 per unit of what the question's terms could give at most: comparable across
        # questions, and large only when the rare terms of the question occur together.
        out[f"dense + {w} bm25/idf_mass"] = lambda p, w=w: (
            p.chunk + p.sentence + w * p.bm25 / max(p.idf_mass, 1e-9) - 0.03 * p.other_year
        )
    out["coverage"] = lambda p: p.coverage
    for w in (0.1, 0.3, 0.5):
        out[f"dense + {w} coverage"] = lambda p, w=w: (
            p.chunk + p.sentence + w * p.coverage - 0.03 * p.other_year
        )
    # Coverage weighted by how decisively it singles out one candidate: the margin between
    # its best and fifth-best chunk, or (what the product uses) between the best and the
    # fifth-best *document*, so that one long policy's chunks do not hide a clear winner.
    out["dense + clip((chunk margin − 0.1)/0.5) × coverage"] = lambda p: (
        p.chunk
        + p.sentence
        + float(np.clip((margin(p.coverage) - 0.1) / 0.5, 0, 1)) * p.coverage
        - 0.03 * p.other_year
    )
    for w, low, high in ((1.0, 0.1, 0.6), (0.6, 0.1, 0.6), (1.5, 0.1, 0.6), (1.0, 0.08, 0.6),
                         (1.0, 0.12, 0.6), (1.0, 0.1, 0.5), (1.0, 0.1, 0.7)):  # fmt: skip
        weights = FusionWeights(coverage=w, margin_low=low, margin_high=high)
        name = "product" if weights == FusionWeights() else "neighbour"
        out[f"{name}: dense + {w}·clip((doc margin − {low})/({high} − {low})) × coverage"] = (
            lambda p, weights=weights: (
                fuse(p.chunk, p.sentence, p.coverage, p.docs, weights)
                - weights.other_year * p.other_year
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("sets", type=Path, nargs="+")
    parser.add_argument("--pool", type=int, default=30)
    parser.add_argument(
        "--reuse", action="store_true", help="reuse the pools saved by the last run (same index)"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/fusion.json"))
    args = parser.parse_args()
    pools = {}
    for eval_set in args.sets:
        cache = args.out.parent / f"pools-{eval_set.name}-{args.pool}.pkl"
        if args.reuse and cache.is_file():
            pools[eval_set.name] = pickle.loads(cache.read_bytes())
            continue
        pools[eval_set.name] = pools_of(eval_set, args.pool)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_bytes(pickle.dumps(pools[eval_set.name]))
    table = {
        name: {s: evaluate(p, rule) for s, p in pools.items()} for name, rule in rules().items()
    }
    sets = list(pools)
    print("| rule | " + " | ".join(f"{s} hit@1 | hit@5 | MRR" for s in sets) + " |")
    print("|---|" + "---|---|---|" * len(sets))
    for name, row in table.items():
        cells = " | ".join(
            f"{row[s]['hit@1']} | {row[s]['hit@5']} | {row[s]['mrr@10']}" for s in sets
        )
        print(f"| {name} | {cells} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(table, indent=2), "utf-8")


if __name__ == "__main__":
    main()
