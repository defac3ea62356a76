"""The index: one Chroma collection, its manifest and its lexical side, kept consistent.

This is the only module that imports chromadb / langchain_chroma, and it converts Chroma
results into our own types in one place.

Consistency across crashes: before its first write, a run marks the manifest dirty; every
batch is written to Chroma first and recorded in the manifest after (atomic replace); a
clean finish marks it clean. A run that finds the manifest dirty reconciles it with what
Chroma really holds, so a killed ingest is repaired by the next one. The lexical index is
stamped with the manifest generation it was built from and rebuilt from Chroma on mismatch.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rag.embed import LazyEmbeddings, model_slug
from rag.lexical import LexicalIndex
from rag.split import sentence_spans
from rag.types import META_FIELDS, Chunk

MANIFEST_VERSION = 1
_GET_PAGE = 5000  # rows per Chroma `get`, to bound memory on big collections


@dataclass
class DocEntry:
    source_hash: str  # raw bytes (+ chunking settings): unchanged input → nothing to do
    text_hash: str  # cleaned text + metadata: finds exact duplicates across files
    chunks: int
    origin: str  # the ingest root it came from: deletions are detected per root


@dataclass
class Manifest:
    version: int = MANIFEST_VERSION
    model: str = ""
    generation: int = 0
    clean: bool = True
    docs: dict[str, DocEntry] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> Manifest:
        if not path.is_file():
            return cls()
        data = json.loads(path.read_text("utf-8"))
        docs = {k: DocEntry(**v) for k, v in data.pop("docs", {}).items()}
        return cls(**data, docs=docs)

    def write(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), ensure_ascii=False), "utf-8")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def chunk_ids(self, doc_id: str) -> list[str]:
        """The ids a document's chunks have in Chroma (none if it is not indexed)."""
        entry = self.docs.get(doc_id)
        return [f"{doc_id}#{i}" for i in range(entry.chunks)] if entry else []

    def expected_chunk_ids(self) -> set[str]:
        return {cid for doc_id in self.docs for cid in self.chunk_ids(doc_id)}


@dataclass(frozen=True)
class Filters:
    """Metadata filters applied inside both retrievers."""

    since: str = ""  # YYYY-MM-DD, inclusive
    until: str = ""
    source: str = ""
    doc_type: str = ""
    exclude_docs: frozenset[str] = frozenset()  # e.g. to ask as if these were not indexed

    def __bool__(self) -> bool:
        return any((self.since, self.until, self.source, self.doc_type, self.exclude_docs))

    def chroma_where(self) -> dict | None:
        clauses: list[dict] = []
        if self.since:
            clauses.append({"date_int": {"$gte": _date_int(self.since)}})
        if self.until:  # undated documents (date_int 0) are outside any date range
            clauses.append({"date_int": {"$lte": _date_int(self.until)}})
            clauses.append({"date_int": {"$gt": 0}})
        if self.source:
            clauses.append({"source": self.source})
        if self.doc_type:
            clauses.append({"doc_type": self.doc_type})
        if self.exclude_docs:
            clauses.append({"doc_id": {"$nin": sorted(self.exclude_docs)}})
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}

    def mask(self, fields: dict[str, np.ndarray]) -> np.ndarray:
        """Which rows of a lexical index (its per-row metadata `fields`) pass."""
        dates = fields["date_int"]
        keep = np.ones(len(dates), dtype=bool)
        if self.since:
            keep &= dates >= _date_int(self.since)
        if self.until:
            keep &= (dates > 0) & (dates <= _date_int(self.until))
        if self.source:
            keep &= fields["source"] == self.source
        if self.doc_type:
            keep &= fields["doc_type"] == self.doc_type
        if self.exclude_docs:
            keep &= ~np.isin(fields["doc_id"], list(self.exclude_docs))
        return keep


@dataclass(frozen=True)
class Stored:
    """A chunk as the index holds it: its vector's similarity to the query, and its
    sentences (offsets within the chunk) with their in-context vectors."""

    chunk: Chunk
    similarity: float
    sentence_spans: tuple[tuple[int, int], ...]
    sentence_vectors: np.ndarray


def _date_int(iso: str) -> int:
    return int(iso.replace("-", "")) if iso else 0


def collection_name(name: str, model: str) -> str:
    """One Chroma collection per (corpus name, embedding model): switching models does not
    mix vectors from two models in one index (the manifest also records the model)."""
    raw = f"{name}-{model_slug(model)}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-._")


class Index:
    def __init__(
        self,
        data_dir: Path,
        name: str,
        embeddings: LazyEmbeddings,
        chroma_url: str = "",
    ):
        self.data_dir = data_dir
        self.name = collection_name(name, embeddings.model)
        self.embeddings = embeddings
        self.chroma_url = chroma_url
        self.folder = data_dir / "indexes" / self.name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.folder / "manifest.json"
        self.manifest = Manifest.read(self.manifest_path)
        if self.manifest.version != MANIFEST_VERSION:
            raise RuntimeError(
                f"{self.manifest_path} was written by another version of this program; "
                "run `rag ingest --rebuild`"
            )
        if self.manifest.docs and self.manifest.model != embeddings.model:
            raise RuntimeError(
                f"index {self.name!r} was built with the embedding model "
                f"{self.manifest.model!r}, not {embeddings.model!r}; use the same model, "
                "another RAG_COLLECTION, or `rag ingest --rebuild`"
            )
        self.manifest.model = embeddings.model
        self._store = None
        self._lexical: LexicalIndex | None = None

    # -- Chroma -------------------------------------------------------------------------

    @property
    def store(self):
        """The langchain-chroma vector store, opened on first use."""
        if self._store is None:
            import chromadb
            from chromadb.config import Settings as ChromaSettings
            from langchain_chroma import Chroma

            settings = ChromaSettings(anonymized_telemetry=False)
            if self.chroma_url:
                from urllib.parse import urlparse

                url = urlparse(self.chroma_url)
                client = chromadb.HttpClient(
                    host=url.hostname or "localhost",
                    port=url.port or 8000,
                    ssl=url.scheme == "https",
                    settings=settings,
                )
            else:
                client = chromadb.PersistentClient(
                    path=str(self.data_dir / "chroma"), settings=settings
                )
            self._store = Chroma(
                collection_name=self.name,
                embedding_function=self.embeddings,
                client=client,
                collection_configuration={"hnsw": {"space": "cosine"}},
            )
        return self._store

    @property
    def _collection(self):
        return self.store._collection

    def count(self) -> int:
        return self._collection.count()

    def _iter_rows(self, include: list[str], where: dict | None = None) -> Iterator[dict]:
        offset = 0
        while True:
            page = self._collection.get(
                where=where, include=include, limit=_GET_PAGE, offset=offset
            )
            ids = page["ids"]
            for i, cid in enumerate(ids):
                yield {"id": cid, **{k: page[k][i] for k in include}}
            if len(ids) < _GET_PAGE:
                return
            offset += len(ids)

    # -- writing --------------------------------------------------------------------------

    @contextmanager
    def _lock(self) -> Iterator[bool]:
        """The cross-process write lock, if free: yields whether this process holds it."""
        with open(self.folder / "write.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Exclusive write access across processes; marks the manifest dirty until a clean
        finish, and brings the lexical index up to date at the end."""
        with self._lock() as held:
            if not held:
                raise RuntimeError(
                    f"another `rag ingest` is writing to {self.folder}; wait for it to finish"
                )
            if not self.manifest.clean:
                self.reconcile()
            yield
            if not self.manifest.clean:
                self.refresh_lexical(save=True)
                self.manifest.clean = True
                self.manifest.write(self.manifest_path)

    def _mark_dirty(self) -> None:
        if self.manifest.clean:
            self.manifest.clean = False
            self.manifest.write(self.manifest_path)

    def write(self, batch: Sequence[tuple[str, DocEntry, list[Chunk]]]) -> None:
        """Replace each document's chunks (embedding the new ones), then record them."""
        if not batch:
            return
        self._mark_dirty()
        self.delete_chunks(
            [cid for doc_id, _, _ in batch for cid in self.manifest.chunk_ids(doc_id)]
        )
        chunks = [c for _, _, cs in batch for c in cs]
        hashes = [entry.text_hash for _, entry, cs in batch for _ in cs]
        if chunks:
            spans = [[(s.start, s.end) for s in sentence_spans(c.text)] for c in chunks]
            vectors, sentence_vectors = self.embeddings.embed_chunks(
                [c.text for c in chunks], spans
            )
            self._collection.upsert(
                ids=[c.chunk_id for c in chunks],
                embeddings=vectors,
                documents=[c.text for c in chunks],
                metadatas=[
                    chunk_metadata(c, h, sp, sv)
                    for c, h, sp, sv in zip(chunks, hashes, spans, sentence_vectors, strict=True)
                ],
            )
        for doc_id, entry, _ in batch:
            self.manifest.docs[doc_id] = entry
        self.manifest.generation += 1
        self.manifest.write(self.manifest_path)

    def remove(self, doc_ids: Sequence[str]) -> int:
        """Drop documents and their chunks; returns how many chunks went."""
        if not doc_ids:
            return 0
        self._mark_dirty()
        ids = [cid for d in doc_ids for cid in self.manifest.chunk_ids(d)]
        self.delete_chunks(ids)
        for d in doc_ids:
            self.manifest.docs.pop(d, None)
        self.manifest.generation += 1
        self.manifest.write(self.manifest_path)
        return len(ids)

    def relocate(self, doc_id: str, origin: str) -> None:
        """Record that a document now comes from another ingest root (same chunks)."""
        self.manifest.docs[doc_id].origin = origin
        self.manifest.write(self.manifest_path)

    def delete_chunks(self, ids: Sequence[str]) -> None:
        for i in range(0, len(ids), _GET_PAGE):
            self.store.delete(ids=list(ids[i : i + _GET_PAGE]))

    def reset(self) -> None:
        """Forget everything (for --rebuild)."""
        self._mark_dirty()
        self.store.reset_collection()
        self.manifest.docs.clear()
        self.manifest.generation += 1
        self.manifest.write(self.manifest_path)

    def reconcile(self) -> None:
        """Make the manifest and Chroma agree after an interrupted run.

        A document counts as present only when Chroma holds exactly its chunks
        `doc_id#0..n-1`, all written from the manifest's version of it; anything else is
        deleted and the document dropped from the manifest, so the next ingest redoes it.
        """
        held: dict[str, dict[str, str]] = {}
        for row in self._iter_rows(["metadatas"]):
            meta = row["metadatas"] or {}
            held.setdefault(str(meta.get("doc_id", "")), {})[row["id"]] = str(
                meta.get("text_hash", "")
            )
        for doc_id, entry in list(self.manifest.docs.items()):
            if held.get(doc_id) != dict.fromkeys(self.manifest.chunk_ids(doc_id), entry.text_hash):
                del self.manifest.docs[doc_id]
        stray = [
            cid
            for doc_id, chunks in held.items()
            if doc_id not in self.manifest.docs
            for cid in chunks
        ]
        self.delete_chunks(stray)
        self.manifest.generation += 1
        self.manifest.write(self.manifest_path)

    # -- lexical side ---------------------------------------------------------------------

    def refresh_lexical(self, save: bool) -> LexicalIndex:
        """Rebuild the BM25 index from what Chroma holds; with `save`, store it stamped
        (only a holder of the write lock saves, so a reader never races an ingest)."""
        ids, texts, metas = [], [], []
        for row in self._iter_rows(["documents", "metadatas"]):
            ids.append(row["id"])
            texts.append(row["documents"] or "")
            metas.append(row["metadatas"] or {})
        lexical = LexicalIndex.build(ids, texts, metas)
        if save:
            lexical.save(self.folder / "lexical", {"generation": self.manifest.generation})
        self._lexical = lexical
        return lexical

    @property
    def lexical(self) -> LexicalIndex:
        if self._lexical is None:
            loaded = LexicalIndex.load(self.folder / "lexical")
            if loaded and loaded[1].get("generation") == self.manifest.generation:
                self._lexical = loaded[0]
            else:  # stale after an interrupted ingest: rebuild, and save if no one writes
                with self._lock() as held:
                    self._lexical = self.refresh_lexical(save=held)
        return self._lexical

    # -- reading --------------------------------------------------------------------------

    def get(self, ids: Sequence[str], query_vector: np.ndarray | None = None) -> list[Stored]:
        """Chunks by id (unknown ids are left out), scored against `query_vector` if given."""
        if not ids:
            return []
        page = self._collection.get(ids=list(ids), include=["documents", "metadatas", "embeddings"])
        return [
            _stored(cid, text, meta, 0.0 if query_vector is None else float(vector @ query_vector))
            for cid, text, meta, vector in zip(
                page["ids"], page["documents"], page["metadatas"], page["embeddings"], strict=True
            )
        ]

    def dense_search(
        self, query_vector: np.ndarray, k: int, filters: Filters | None = None
    ) -> list[Stored]:
        """Top `k` chunks by cosine similarity to `query_vector`."""
        found = self._collection.query(
            query_embeddings=[np.asarray(query_vector, dtype=np.float32)],
            n_results=k,
            where=filters.chroma_where() if filters else None,
            include=["documents", "metadatas", "distances"],
        )
        return [
            _stored(cid, text, meta, 1.0 - float(dist))
            for cid, text, meta, dist in zip(
                found["ids"][0],
                found["documents"][0],
                found["metadatas"][0],
                found["distances"][0],
                strict=True,
            )
        ]

    def lexical_mask(self, filters: Filters | None) -> np.ndarray | None:
        """Rows of the lexical index that pass `filters` (None = all)."""
        return filters.mask(self.lexical.fields) if filters else None


def chunk_metadata(
    chunk: Chunk, text_hash: str, spans: list[tuple[int, int]], sentence_vectors: np.ndarray
) -> dict:
    """Chroma metadata holds scalars only: sentence offsets go in as JSON, their vectors
    as base64 float16 (768 bytes a sentence), so they are written atomically with the chunk."""
    meta = {k: chunk.meta.get(k, "") for k in META_FIELDS}
    meta.update(
        doc_id=chunk.doc_id,
        index=chunk.index,
        start=chunk.start,
        end=chunk.end,
        text_hash=text_hash,
        date_int=_date_int(meta["date"]) if meta["date"] else 0,
        sentences=json.dumps(spans),
        sentence_vectors=base64.b64encode(sentence_vectors.astype("<f2").tobytes()).decode(),
    )
    return meta


def _stored(chunk_id: str, text: str | None, meta: dict | None, similarity: float) -> Stored:
    meta = meta or {}
    spans = tuple(tuple(s) for s in json.loads(meta.get("sentences") or "[]"))
    raw = base64.b64decode(meta.get("sentence_vectors") or "")
    vectors = np.frombuffer(raw, dtype="<f2").astype(np.float32).reshape(len(spans), -1)
    return Stored(to_chunk(chunk_id, text or "", meta), similarity, spans, vectors)


def to_chunk(chunk_id: str, text: str, meta: dict) -> Chunk:
    return Chunk(
        chunk_id=chunk_id,
        doc_id=str(meta.get("doc_id", chunk_id.rsplit("#", 1)[0])),
        index=int(meta.get("index", 0)),
        text=text,
        start=int(meta.get("start", 0)),
        end=int(meta.get("end", len(text))),
        meta={k: str(meta.get(k, "")) for k in META_FIELDS},
    )
