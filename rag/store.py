"""The vector store: the only module that imports chromadb / langchain_chroma.

It opens Chroma (embedded, or a `chroma run` server), writes in batches Chroma accepts,
and converts Chroma rows into our own types in one place.

Rows are versioned so that readers never see a half-written change: a row is written
with `gen` = the generation that will publish it and `dead` = NEVER, and a row that a
later generation replaces or deletes gets `dead` = that generation. A reader at
generation G sees exactly the rows with `gen <= G < dead` (`visible(G)`), so an ingest
can write while readers read, and no answer mixes two generations. The record id is
`chunk_id@gen`, so two versions of one chunk can coexist until the old one is collected.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.types import CHUNK_FIELDS, META_FIELDS, Chunk

NEVER = 2**31 - 1  # `dead` of a row no generation has removed (Chroma ints are 32-bit safe)
_GET_PAGE = 2000  # rows per `get`, to bound memory on big collections


@dataclass(frozen=True)
class Stored:
    """A chunk as the index holds it: its vector's similarity to the query, and its
    sentences (offsets within the chunk) with the name of their in-context vectors, which
    are kept apart (`rag.sentences`). A row an older version wrote carries the vectors
    themselves in its metadata (`legacy_vectors`; (0, 0) for any other row)."""

    chunk: Chunk
    similarity: float
    sentence_spans: tuple[tuple[int, int], ...]
    legacy_vectors: np.ndarray
    record_id: str = ""
    sentence_key: str = ""


def record_id(chunk_id: str, gen: int) -> str:
    return f"{chunk_id}@{gen}"


def visible(gen: int, *clauses: dict) -> dict:
    """The rows a reader at generation `gen` may see (those of them that also match
    every one of `clauses`)."""
    return {"$and": [{"gen": {"$lte": gen}}, {"dead": {"$gt": gen}}, *clauses]}


def delete_where(collection, where: dict, step: int) -> set[str]:
    """Delete the rows matching `where`; returns the `sentence_key`s they named."""
    keys: set[str] = set()
    while True:
        page = collection.get(where=where, include=["metadatas"], limit=step)
        if not page["ids"]:
            return keys
        keys |= sentence_keys(page["metadatas"])
        collection.delete(ids=page["ids"])


def sentence_keys(metadatas: Sequence[dict | None]) -> set[str]:
    """The `sentence_key`s rows name (rows an older version wrote name none)."""
    return {k for meta in metadatas if meta and (k := meta.get("sentence_key"))}


def recover(collection, gen: int, step: int) -> set[str]:
    """Undo what an interrupted writer left in a collection of versioned rows: rows of
    unpublished generations go, rows it had marked dead come back, rows dead before `gen`
    go (those that died with `gen` stay a generation longer, for readers still at the one
    before). Returns the `sentence_key`s of the rows deleted."""
    keys = delete_where(collection, {"gen": {"$gt": gen}}, step)
    while True:
        ids = collection.get(
            where={"$and": [{"dead": {"$gt": gen}}, {"dead": {"$lt": NEVER}}]},
            include=[],
            limit=step,
        )["ids"]
        if not ids:
            break
        collection.update(ids=ids, metadatas=[{"dead": NEVER}] * len(ids))
    return keys | collect(collection, gen - 1, step)


def collect(collection, gen: int, step: int) -> set[str]:
    """Delete versioned rows no reader at generation `gen` or later can see; returns the
    `sentence_key`s they named."""
    return delete_where(collection, {"dead": {"$lte": gen}}, step)


def pages(collection, where: dict, include: list[str], step: int) -> Iterator[dict]:
    """Every record matching `where`, `step` at a time, to bound memory on big collections.

    The matching ids are read first, in one query, then the records by id. Paging with
    limit/offset under a `where` grew with the square of the rows: reading back 100k
    chunks took 39 s (15 s this way), and 1M had not finished after 20 minutes."""
    yield from by_id(collection, collection.get(where=where, include=[])["ids"], include, step)


def by_id(collection, ids: Sequence[str], include: list[str], step: int) -> Iterator[dict]:
    """The records `ids`, `step` at a time (those no longer there are left out)."""
    for i in range(0, len(ids), step):
        page = collection.get(ids=list(ids[i : i + step]), include=include)
        if page["ids"]:
            yield page


def date_int(iso: str) -> int:
    return int(iso.replace("-", "")) if iso else 0


class Store:
    """One Chroma collection. Thread-safe to open; Chroma's client is thread-safe."""

    def __init__(self, name: str, embeddings, path: Path | None = None, url: str = ""):
        self.name = name
        self.embeddings = embeddings
        self.path = path
        self.url = url
        self._vectorstore = None
        self._lock = threading.Lock()

    @property
    def vectorstore(self):
        """The langchain-chroma vector store, opened on first use (once, under a lock)."""
        with self._lock:
            if self._vectorstore is None:
                self._vectorstore = self._open()
        return self._vectorstore

    def _open(self):
        import chromadb
        from chromadb.config import Settings as ChromaSettings
        from langchain_chroma import Chroma

        settings = ChromaSettings(anonymized_telemetry=False)
        if self.url:
            from urllib.parse import urlparse

            url = urlparse(self.url)
            client = chromadb.HttpClient(
                host=url.hostname or "localhost",
                port=url.port or 8000,
                ssl=url.scheme == "https",
                settings=settings,
            )
        else:
            client = chromadb.PersistentClient(path=str(self.path), settings=settings)
        return Chroma(
            collection_name=self.name,
            embedding_function=self.embeddings,
            client=client,
            collection_configuration={"hnsw": {"space": "cosine"}},
        )

    @property
    def collection(self):
        return self.vectorstore._collection

    @property
    def max_batch(self) -> int:
        """Rows one Chroma write takes (5,461 for chromadb 1.5 embedded)."""
        return self.vectorstore._client.get_max_batch_size()

    # -- writing --------------------------------------------------------------------------

    def add(
        self,
        chunks: Sequence[Chunk],
        gen: int,
        kbs: Sequence[str],
        text_hashes: Sequence[str],
        vectors: np.ndarray,
        spans: Sequence[Sequence[tuple[int, int]]],
        sentence_keys: Sequence[str],
    ) -> None:
        """Write `chunks` (each with its document's knowledge base and text hash) as rows
        of generation `gen`, invisible until it is published; one upsert per max batch."""
        step = self.max_batch
        for i in range(0, len(chunks), step):
            part = slice(i, i + step)
            self.collection.upsert(
                ids=[record_id(c.chunk_id, gen) for c in chunks[part]],
                embeddings=np.asarray(vectors[part], dtype=np.float32),
                documents=[c.text for c in chunks[part]],
                metadatas=[
                    chunk_metadata(c, gen, kb, h, sp, key)
                    for c, kb, h, sp, key in zip(
                        chunks[part],
                        kbs[part],
                        text_hashes[part],
                        spans[part],
                        sentence_keys[part],
                        strict=True,
                    )
                ],
            )

    def copy(self, ids: Sequence[str], gen: int, changes: dict) -> list[tuple[str, str, dict]]:
        """Write new rows of generation `gen` that repeat rows `ids` (same vectors) with
        `changes` applied to their metadata: a metadata edit needs no embedding. Returns
        the rows copied as they were (record id, text, metadata), as `rows` would."""
        include = ["documents", "metadatas", "embeddings"]
        copied: dict[str, tuple[str, str, dict]] = {}
        for page in by_id(self.collection, ids, include, min(self.max_batch, _GET_PAGE)):
            for rid, text, meta in zip(
                page["ids"], page["documents"], page["metadatas"], strict=True
            ):
                copied[rid] = (rid, text or "", dict(meta))
            metas = [{**m, **changes, "gen": gen, "dead": NEVER} for m in page["metadatas"]]
            for meta in metas:
                meta["date_int"] = date_int(meta.get("date", ""))
            self.collection.upsert(
                ids=[record_id(m["chunk_id"], gen) for m in metas],
                embeddings=page["embeddings"],
                documents=page["documents"],
                metadatas=metas,
            )
        return [copied[rid] for rid in ids if rid in copied]

    def mark_dead(self, ids: Sequence[str], gen: int) -> None:
        """Rows `ids` stop being visible from generation `gen` on."""
        step = self.max_batch
        for i in range(0, len(ids), step):
            part = list(ids[i : i + step])
            self.collection.update(ids=part, metadatas=[{"dead": gen}] * len(part))

    def delete(self, ids: Sequence[str]) -> None:
        step = self.max_batch
        for i in range(0, len(ids), step):
            self.collection.delete(ids=list(ids[i : i + step]))

    def recover(self, gen: int) -> set[str]:
        """Undo what an interrupted writer left behind (`recover`); returns the
        `sentence_key`s of the rows deleted."""
        return recover(self.collection, gen, self.max_batch)

    def collect(self, gen: int) -> set[str]:
        """Delete rows no reader at generation `gen` or later can see; returns the
        `sentence_key`s they named."""
        return collect(self.collection, gen, self.max_batch)

    def companion(self, suffix: str):
        """A raw Chroma collection beside this one, on the same client (the manifest's,
        when Chroma is a server: every replica reads it there)."""
        client = self.vectorstore._client
        return client.get_or_create_collection(f"{self.name}-{suffix}", embedding_function=None)

    def reset(self) -> None:
        self.vectorstore.reset_collection()

    # -- reading --------------------------------------------------------------------------

    def iter_rows(self, where: dict) -> Iterator[tuple[str, str, dict]]:
        """(record id, text, metadata) of every row matching `where`, a page at a time."""
        for page in pages(self.collection, where, ["documents", "metadatas"], _GET_PAGE):
            for rid, text, meta in zip(
                page["ids"], page["documents"], page["metadatas"], strict=True
            ):
                yield rid, text or "", meta or {}

    def sentence_keys_in(self, keys: set[str]) -> set[str]:
        """Which of `keys` some row (of any generation) still names."""
        wanted = sorted(keys)
        named: set[str] = set()
        for i in range(0, len(wanted), _GET_PAGE):
            where = {"sentence_key": {"$in": wanted[i : i + _GET_PAGE]}}
            for page in pages(self.collection, where, ["metadatas"], _GET_PAGE):
                named |= sentence_keys(page["metadatas"])
        return named

    def rows(self, ids: Sequence[str]) -> list[tuple[str, str, dict]]:
        """(record id, text, metadata) of rows by record id, in the order asked (ids no
        longer there are left out)."""
        found: dict[str, tuple[str, str, dict]] = {}
        for page in by_id(self.collection, ids, ["documents", "metadatas"], _GET_PAGE):
            for rid, text, meta in zip(
                page["ids"], page["documents"], page["metadatas"], strict=True
            ):
                if meta:
                    found[rid] = (rid, text or "", meta)
        return [found[rid] for rid in ids if rid in found]

    def get(self, ids: Sequence[str], query_vector: np.ndarray | None = None) -> list[Stored]:
        """Rows by record id (ids no longer there are left out), scored against
        `query_vector` if given."""
        if not ids:
            return []
        page = self.collection.get(ids=list(ids), include=["documents", "metadatas", "embeddings"])
        return [
            _stored(rid, text, meta, 0.0 if query_vector is None else float(vector @ query_vector))
            for rid, text, meta, vector in zip(
                page["ids"], page["documents"], page["metadatas"], page["embeddings"], strict=True
            )
            if meta  # a row collected between the query and this read: leave it out
        ]

    def query(self, query_vector: np.ndarray, k: int, where: dict | None) -> list[Stored]:
        """Top `k` rows matching `where` (None = any row, of any generation) by cosine
        similarity to `query_vector`."""
        found = self.collection.query(
            query_embeddings=[np.asarray(query_vector, dtype=np.float32)],
            n_results=k,
            where=where,
            include=["documents", "metadatas", "distances"],
        )
        return [
            _stored(rid, text, meta, 1.0 - float(dist))
            for rid, text, meta, dist in zip(
                found["ids"][0],
                found["documents"][0],
                found["metadatas"][0],
                found["distances"][0],
                strict=True,
            )
            if meta
        ]


def chunk_metadata(
    chunk: Chunk,
    gen: int,
    kb: str,
    text_hash: str,
    spans: Sequence[tuple[int, int]],
    sentence_key: str,
) -> dict:
    """Chroma metadata holds scalars only: sentence offsets go in as JSON; their vectors
    are kept apart (`rag.sentences`), under `sentence_key`."""
    meta = {k: chunk.meta.get(k, "") for k in (*META_FIELDS, *CHUNK_FIELDS)}
    meta.update(
        chunk_id=chunk.chunk_id,
        doc_id=chunk.doc_id,
        kb=kb,
        gen=gen,
        dead=NEVER,
        index=chunk.index,
        start=chunk.start,
        end=chunk.end,
        text_hash=text_hash,
        date_int=date_int(meta["date"]),
        sentences=json.dumps([list(s) for s in spans]),
        sentence_key=sentence_key,
    )
    return meta


def _stored(rid: str, text: str | None, meta: dict, similarity: float) -> Stored:
    spans = tuple(tuple(s) for s in json.loads(meta.get("sentences") or "[]"))
    # Rows written before the vectors moved out of Chroma's metadata still carry them.
    raw = base64.b64decode(meta.get("sentence_vectors") or "")
    vectors = np.frombuffer(raw, dtype="<f2").astype(np.float32)
    # A chunk without sentences (none found) has no vectors: (0, 0), not a reshape error.
    vectors = (
        vectors.reshape(len(spans), -1) if spans and vectors.size else np.zeros((0, 0), np.float32)
    )
    return Stored(
        to_chunk(text or "", meta), similarity, spans, vectors, rid, meta.get("sentence_key", "")
    )


def to_chunk(text: str, meta: dict) -> Chunk:
    return Chunk(
        chunk_id=str(meta["chunk_id"]),
        doc_id=str(meta["doc_id"]),
        index=int(meta.get("index", 0)),
        text=text,
        start=int(meta.get("start", 0)),
        end=int(meta.get("end", len(text))),
        meta={k: str(meta.get(k, "")) for k in (*META_FIELDS, "kb", *CHUNK_FIELDS)},
    )
