"""Optional reranking of the retrieved passages by a cross-encoder (`RAG_RERANK_MODEL`).

Off by default, because no cross-encoder can be had offline with the product. On rgb-dev
the bundled e5 ranks a gold passage first for ~0.8 of the questions whatever the fusion,
and what it misses needs a model that reads the question and the passage together
(bench/README.md). A site that has one on disk — a sentence-transformers `CrossEncoder`
folder such as bge-reranker-base — points the setting at it; the hybrid candidates are
then reordered by its scores before the answerer quotes the first k.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from rag.types import Hit


class CrossEncoderReranker:
    """Scores (question, passage) pairs with a cross-encoder and sorts the hits by it."""

    def __init__(self, model: str, batch_size: int = 16):
        from sentence_transformers import CrossEncoder
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self.model = model
        self.batch_size = batch_size
        folder = Path(model).expanduser()
        if model.startswith(("/", ".", "~")) and not folder.is_dir():
            # A path, not a Hugging Face id: sentence-transformers would call it a bad repo id.
            raise RuntimeError(
                f"reranker folder {model!r} does not exist. Set RAG_RERANK_MODEL to a local "
                "sentence-transformers CrossEncoder folder, or empty to rerank nothing."
            )
        try:
            # Loaded up front, not on the first question: the setting is an explicit
            # choice, and a wrong path should stop `rag serve` at start, not fail a user.
            self._encoder = CrossEncoder(model, device="cpu", local_files_only=True)
        except (OSError, ValueError) as err:
            raise RuntimeError(
                f"cannot load reranker {model!r} offline: {str(err).rstrip('.')}. Set RAG_RERANK_MODEL to "
                "a local sentence-transformers CrossEncoder folder, or empty to rerank nothing."
            ) from err

    def rerank(
        self, question: str, hits: Sequence[Hit], timings: dict[str, float] | None = None
    ) -> list[Hit]:
        """The hits, best first by the cross-encoder; each hit's `score` becomes its
        cross-encoder score (what the citations then show)."""
        if not hits:
            return []
        clock = time.perf_counter()
        scores = np.asarray(
            self._encoder.predict(
                [(question, hit.chunk.text) for hit in hits],
                batch_size=self.batch_size,
                show_progress_bar=False,
            ),
            dtype=np.float64,
        ).reshape(len(hits), -1)[:, -1]  # a two-label model: the "relevant" column
        order = np.argsort(-scores, kind="stable")
        if timings is not None:
            timings["rerank_ms"] = (time.perf_counter() - clock) * 1000
        return [replace(hits[i], score=float(scores[i])) for i in order]
