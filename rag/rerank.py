"""Optional reranking of the retrieved passages by a cross-encoder (`RAG_RERANK_MODEL`).

Off by default, because no cross-encoder can be had offline with the product. On rgb-dev
the bundled e5 ranks a gold passage first for ~0.8 of the questions whatever the fusion,
and what it misses looks like work for a model that reads question and passage together
(bench/README.md). A site that has one on disk — a sentence-transformers `CrossEncoder`
folder such as bge-reranker-base — points the setting at it; the hybrid candidates are
then reordered by its scores before the answerer quotes the first k. Whether that reaches
the targets the bundled e5 misses could not be measured here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from rag.embed import load_cross_encoder
from rag.models.reader import Reader, passage_text
from rag.types import Hit


class CrossEncoderReranker:
    """Scores (question, passage) pairs with a cross-encoder and sorts the hits by it."""

    def __init__(self, model: str, batch_size: int = 16):
        self.model = model
        self.batch_size = batch_size
        # Loaded up front, not on the first question: the setting is an explicit choice,
        # and a wrong path should stop `rag serve` at start, not fail a user's question.
        self._encoder = load_cross_encoder(model)
        self.labels = self._encoder.num_labels
        if self.labels not in (1, 2):
            raise RuntimeError(
                f"reranker {model!r} has {self.labels} labels; a reranker gives one "
                "relevance score, or two (not relevant, relevant)"
            )

    def scores(self, question: str, texts: Sequence[str]) -> np.ndarray:
        """Relevance of each text to the question: the model's score, or for a two-label
        model the probability of “relevant”."""
        out = self._encoder.predict(
            [(question, text) for text in texts],
            batch_size=self.batch_size,
            show_progress_bar=False,
            apply_softmax=self.labels == 2,
        )
        out = np.asarray(out, dtype=np.float64)
        return out[:, 1] if self.labels == 2 else out.reshape(-1)

    def rerank(
        self, question: str, hits: Sequence[Hit], timings: dict[str, float] | None = None
    ) -> list[Hit]:
        """The hits, best first by the cross-encoder; each hit's `score` becomes its
        cross-encoder score (what the citations then show)."""
        if not hits:
            return []
        clock = time.perf_counter()
        scores = self.scores(question, [hit.chunk.text for hit in hits])
        order = np.argsort(-scores, kind="stable")
        if timings is not None:
            timings["rerank_ms"] = (time.perf_counter() - clock) * 1000
        return [replace(hits[i], score=float(scores[i])) for i in order]


class ReaderReranker:
    """Reorders the first `depth` retrieved passages by the hybrid's score (scaled to 0–1
    within the question) plus `weight` × the reading model's confidence that the passage
    answers. Measured by bench/rerank_fit.py (depth and weight by cross-validation on the
    dev sets) and not wired into the product: the shipped model moves no set's hit@1
    (bench/README.md, "Reading model")."""

    def __init__(self, reader: Reader, depth: int, weight: float):
        self.reader = reader
        self.depth = depth
        self.weight = weight

    def rerank(
        self, question: str, hits: Sequence[Hit], timings: dict[str, float] | None = None
    ) -> list[Hit]:
        if not hits:
            return []
        clock = time.perf_counter()
        top, rest = list(hits[: self.depth]), list(hits[self.depth :])
        readings = self.reader.read(question, [passage_text(h) for h in top])
        confidence = np.zeros(len(top))
        for reading in readings:
            confidence[reading.passage] = reading.confidence
        fused = np.array([h.score for h in top])
        prior = (fused - fused.min()) / ((fused.max() - fused.min()) or 1.0)
        order = np.argsort(-(prior + self.weight * confidence), kind="stable")
        if timings is not None:
            timings["rerank_ms"] = (time.perf_counter() - clock) * 1000
        return [top[i] for i in order] + rest
