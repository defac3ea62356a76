"""Retrieval: dense (chunk and in-context sentence vectors) plus BM25, fused.

BM25 finds the candidates its words match; how much the words then count is decided per
question, because the two kinds of corpus we serve pull in opposite directions
(bench/README.md, "Fusion on news and on policies"):
- News (rgb-dev): the passages that repeat the question's words are mostly distractors
  on the same topic; any fixed lexical weight costs hit@1. The best in-context sentence of
  a chunk (a chunk that holds the answer usually has one sentence very close to the
  question) is what ranks the answer first.
- Policies (policy-dev): questions reuse a document's own terms (its name, issuer,
  clause wording), and matching them beats the embedding by 13 points of hit@1.
The lexical signal is the idf-weighted share of the question's bigrams a chunk (with its
document title in front) contains: unlike BM25 it does not punish long clauses. Its
weight follows how decisively it singles out one document: the best document's coverage
minus the fifth best's. Same-topic news leaves that margin small (median 0.09), a policy
question's own terms make it large (median 0.31), so the words count where they
discriminate and not where every candidate shares them.
A chunk that names only years other than the one the question asks about loses a little:
it is most likely about another period (rgb-dev answer accuracy 0.85 → 0.87).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from rag.figures import years
from rag.index import Filters, Index, Snapshot
from rag.lexical import bigram_set, jaccard
from rag.store import Stored
from rag.types import Hit

NEAR_DUPLICATE = 0.9  # bigram Jaccard above which two chunks say the same thing


class Mode(enum.StrEnum):
    DENSE = "dense"  # the chunk vector alone: what a plain vector store does
    LEXICAL = "lexical"  # BM25 alone
    HYBRID = "hybrid"


@dataclass(frozen=True)
class FusionWeights:
    chunk: float = 1.0
    sentence: float = 1.0
    coverage: float = 1.0  # at full confidence; 0.6–1.5 measured alike (bench/README.md)
    # Coverage margin (best document − fifth best) at which the words start to count, and
    # at which they count fully.
    margin_low: float = 0.1
    margin_high: float = 0.6
    other_year: float = 0.03  # 0.02–0.08 measured the same on rgb-dev; project set unmoved


def about_other_years(text: str, question: str) -> bool:
    """The question names a year and `text` names years, none of them that one
    (“2023年考研报名人数…” for “2022年考研报名人数是多少”)."""
    asked = set(years(question))
    named = set(years(text))
    return bool(asked and named and not named & asked)


def document_margin(doc_ids: Sequence[str], values: np.ndarray, k: int = 5) -> float:
    """Best document's value minus the k-th best document's (a document counts once, by
    its best chunk, so one long policy's chunks do not make the margin look small)."""
    best: dict[str, float] = {}
    for doc_id, value in zip(doc_ids, values.tolist(), strict=True):
        best[doc_id] = max(best.get(doc_id, value), value)
    ranked = sorted(best.values(), reverse=True)
    return ranked[0] - ranked[min(k, len(ranked)) - 1] if ranked else 0.0


def fuse(
    chunk_sim: np.ndarray,
    sentence_sim: np.ndarray,
    covered: np.ndarray,
    doc_ids: Sequence[str],
    weights: FusionWeights,
) -> np.ndarray:
    """Score candidates: cosine of the chunk, cosine of its best sentence, and the share
    of the question they cover, weighted by how decisively coverage picks a document."""
    margin = document_margin(doc_ids, covered)
    confidence = np.clip(
        (margin - weights.margin_low) / (weights.margin_high - weights.margin_low), 0.0, 1.0
    )
    return (
        weights.chunk * chunk_sim
        + weights.sentence * sentence_sim
        + weights.coverage * float(confidence) * covered
    )


class HybridRetriever(BaseRetriever):
    """langchain-core retriever over our index; `search` returns our own `Hit`s."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: Index
    k: int = 5
    mode: Mode = Mode.HYBRID
    candidates: int = 15  # per retriever; more did not change rgb-dev hit@1/hit@5
    weights: FusionWeights = FusionWeights()
    filters: Filters = Filters()

    def search(
        self,
        question: str,
        k: int | None = None,
        filters: Filters | None = None,
        query_vector: np.ndarray | None = None,
        timings: dict[str, float] | None = None,
        snapshot: Snapshot | None = None,
    ) -> list[Hit]:
        """Top `k` distinct chunks for `question`, best first, all from one generation of
        the index (`snapshot`, or the current one)."""
        k = k or self.k
        snapshot = snapshot or self.index.snapshot()
        filters = filters if filters is not None else self.filters
        timings = timings if timings is not None else {}
        clock = time.perf_counter()
        if query_vector is None:
            query_vector = np.asarray(self.index.embeddings.embed_query(question), np.float32)
            timings["embed_ms"] = (time.perf_counter() - clock) * 1000
        n = max(self.candidates, k)

        clock = time.perf_counter()
        pool: dict[str, Stored] = {}
        dense_rank: dict[str, int] = {}
        if self.mode is not Mode.LEXICAL:
            for rank, stored in enumerate(snapshot.dense_search(query_vector, n, filters), 1):
                pool[stored.chunk.chunk_id] = stored
                dense_rank[stored.chunk.chunk_id] = rank
        timings["dense_ms"] = (time.perf_counter() - clock) * 1000

        clock = time.perf_counter()
        lexical_rank: dict[str, int] = {}
        lexical_score: dict[str, float] = {}
        if self.mode is not Mode.DENSE:
            lexical = snapshot.lexical
            all_scores = lexical.scores(question, snapshot.lexical_mask(filters))
            for rank, (cid, _score) in enumerate(lexical.top(all_scores, n), 1):
                lexical_rank[cid] = rank
            missing = [cid for cid in lexical_rank if cid not in pool]
            for stored in snapshot.get(missing, query_vector):
                pool[stored.chunk.chunk_id] = stored
            for cid in pool:
                row = lexical.row.get(cid)
                lexical_score[cid] = float(all_scores[row]) if row is not None else 0.0
        timings["lexical_ms"] = (time.perf_counter() - clock) * 1000

        clock = time.perf_counter()
        ids = list(pool)
        stored = [pool[cid] for cid in ids]
        sentence_sims = [
            vectors @ query_vector if vectors.size else np.zeros(0)
            for vectors in snapshot.sentence_vectors(stored)
        ]
        chunk_sim = np.array([s.similarity for s in stored], dtype=np.float32)
        best_sentence = np.array(
            [
                float(v.max()) if v.size else c
                for v, c in zip(sentence_sims, chunk_sim, strict=True)
            ],
            dtype=np.float32,
        )
        bm25 = np.array([lexical_score.get(cid, 0.0) for cid in ids], dtype=np.float32)
        if self.mode is Mode.DENSE:
            scores = chunk_sim
        elif self.mode is Mode.LEXICAL:
            scores = bm25
        else:
            lexical = snapshot.lexical
            every_row = lexical.coverage(question)
            covered = np.array(
                [every_row[lexical.row[s.chunk.chunk_id]] for s in stored], dtype=np.float32
            )
            scores = fuse(
                chunk_sim, best_sentence, covered, [s.chunk.doc_id for s in stored], self.weights
            )
            other_period = [about_other_years(s.chunk.text, question) for s in stored]
            scores -= self.weights.other_year * np.array(other_period, dtype=np.float32)

        hits = [
            Hit(
                chunk=stored[i].chunk,
                score=float(scores[i]),
                dense_rank=dense_rank.get(ids[i], 0),
                lexical_rank=lexical_rank.get(ids[i], 0),
                dense_score=float(chunk_sim[i]),
                lexical_score=float(bm25[i]),
                sentence_spans=stored[i].sentence_spans,
                sentence_scores=tuple(float(x) for x in sentence_sims[i]),
                also_in=also_in,
            )
            for i, also_in in distinct(
                np.argsort(-scores, kind="stable").tolist(),
                [s.chunk.text for s in stored],
                [s.chunk.doc_id for s in stored],
                k,
            )
        ]
        timings["fuse_ms"] = (time.perf_counter() - clock) * 1000
        return hits

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[LCDocument]:
        return [to_langchain(hit) for hit in self.search(query)]


def distinct(
    order: Sequence[int], texts: Sequence[str], doc_ids: Sequence[str], k: int
) -> list[tuple[int, tuple[str, ...]]]:
    """The first `k` candidates in `order` whose text is not a near-duplicate (bigram
    Jaccard ≥ NEAR_DUPLICATE) of one kept before, each with the other documents whose
    copies were folded into it (`Hit.also_in`)."""
    kept: list[tuple[int, frozenset[str], dict[str, None]]] = []
    for i in order:
        tokens = bigram_set(texts[i])
        same = next((kept_ for kept_ in kept if jaccard(tokens, kept_[1]) >= NEAR_DUPLICATE), None)
        if same is not None:
            if doc_ids[i] != doc_ids[same[0]]:
                same[2][doc_ids[i]] = None
            continue
        kept.append((i, tokens, {}))
        if len(kept) == k:
            break
    return [(i, tuple(copies)) for i, _, copies in kept]


def interleave(hit_lists: Sequence[Sequence[Hit]]) -> list[Hit]:
    """The hits of several searches in one list: every search's first hit, then every
    second, …, each chunk once — so each part of a split question has its best passage
    among the first ones."""
    merged: dict[str, Hit] = {}
    for rank in range(max((len(h) for h in hit_lists), default=0)):
        for hits in hit_lists:
            if rank < len(hits):
                merged.setdefault(hits[rank].chunk.chunk_id, hits[rank])
    return list(merged.values())


def to_langchain(hit: Hit) -> LCDocument:
    chunk = hit.chunk
    return LCDocument(
        page_content=chunk.text,
        id=chunk.chunk_id,
        metadata={
            **chunk.meta,
            "doc_id": chunk.doc_id,
            "chunk_id": chunk.chunk_id,
            "score": hit.score,
        },
    )
