"""Embeddings: the one module that owns sentence-transformers (through langchain-huggingface).

The model loads on first use, not on construction, so an ingest with nothing to embed
and a process that never queries do not pay for it.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from langchain_core.embeddings import Embeddings

from rag import e5_bundle
from rag.config import BUNDLED_E5


def model_slug(model: str) -> str:
    """A short, filesystem- and collection-name-safe name for a model setting."""
    name = model.split(":", 1)[1] if model == BUNDLED_E5 else model.rstrip("/").split("/")[-1]
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()[:40] or "model"


def resolve_model_path(model: str, data_dir: Path) -> str:
    """The bundled e5 is materialised under the data dir once; anything else is passed to
    sentence-transformers as a Hugging Face id or a local folder."""
    if model == BUNDLED_E5:
        return str(e5_bundle.materialise(data_dir / "models" / model_slug(model)))
    return model


def default_prefixes(model: str) -> tuple[str, str]:
    """e5 models were trained with `query: ` / `passage: `; others get none unless set."""
    return ("query: ", "passage: ") if "e5" in model.lower() else ("", "")


class LazyEmbeddings(Embeddings):
    """A langchain `Embeddings` that builds `HuggingFaceEmbeddings` on first use."""

    def __init__(
        self,
        model: str,
        data_dir: Path,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        batch_size: int = 32,
    ):
        default_query, default_passage = default_prefixes(model)
        self.model = model
        self.data_dir = data_dir
        self.query_prefix = default_query if query_prefix is None else query_prefix
        self.passage_prefix = default_passage if passage_prefix is None else passage_prefix
        self.batch_size = batch_size
        self._impl = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._impl is not None

    def _embeddings(self):
        with self._lock:
            if self._impl is None:
                self._impl = self._load()
        return self._impl

    def _load(self):
        # Air-gapped sites: never try the network for a model; a missing model must
        # fail at once with a clear message instead of hanging on a download.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        from langchain_huggingface import HuggingFaceEmbeddings
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        path = resolve_model_path(self.model, self.data_dir)
        common = {"normalize_embeddings": True, "batch_size": self.batch_size}
        try:
            return HuggingFaceEmbeddings(
                model_name=path,
                model_kwargs={"device": "cpu"},
                encode_kwargs={**common, "prompt": self.passage_prefix},
                query_encode_kwargs={**common, "prompt": self.query_prefix},
            )
        except OSError as err:
            raise RuntimeError(
                f"cannot load embedding model {self.model!r} offline: {err}. "
                "Set RAG_EMBEDDING_MODEL to a local folder or a model in the Hugging Face cache."
            ) from err

    @property
    def sentence_transformer(self):
        """The underlying SentenceTransformer, for batched encodes beyond langchain's API."""
        return self._embeddings()._client

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._embeddings().embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self._embeddings().embed_query(text)
