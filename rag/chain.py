"""Wiring: from the one `Settings` object to a ready index (and, later, the answer chain)."""

from __future__ import annotations

from rag.config import Settings
from rag.embed import LazyEmbeddings
from rag.index import Index


def open_index(settings: Settings, collection: str | None = None) -> Index:
    embeddings = LazyEmbeddings(
        settings.embedding_model,
        settings.data_dir,
        query_prefix=settings.query_prefix,
        passage_prefix=settings.passage_prefix,
        batch_size=settings.embed_batch_size,
    )
    return Index(
        settings.data_dir, collection or settings.collection, embeddings, settings.chroma_url
    )
