"""Sentence vectors, kept in a SQLite file beside the index instead of in Chroma's metadata.

Every chunk carries one in-context vector per sentence (`LazyEmbeddings.embed_chunks`).
As base64 strings in Chroma's metadata they were about three quarters of Chroma's disk
(185 of 248 MiB at 10k chunks): Chroma's SQLite keeps every string value twice (the row
and an index over it), and every query and every read-back carried them. Here they are
raw float16 blobs (768 bytes a sentence of e5-small's 384 dimensions), read by key for
the few chunks a question ranks.

A row's `sentence_key` (a hash of the text its vectors were computed from and the
sentence offsets) names its vectors, so what is kept is a cache of a pure function: a
row a metadata edit copies keeps its key, a replica on a Chroma server reads what the
writer put there (`SharedSentences`) and keeps a copy, and vectors found nowhere (a file
removed) are computed again, once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from rag.db import PerThread
from rag.split import with_title
from rag.store import Stored
from rag.types import Chunk

log = logging.getLogger(__name__)

_SCHEMA = "CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, data BLOB NOT NULL)"
_READ_STEP = 500  # keys per SELECT: SQLite allows 32,766 variables; small pages stay fast


def framed(chunk: Chunk, spans: Sequence[tuple[int, int]]) -> tuple[str, list[tuple[int, int]]]:
    """The text embedded for `chunk` (its title in front, `with_title`) and its sentences'
    offsets (`spans`, within the chunk's own text) moved into that text."""
    text, at = with_title(chunk.text, chunk.meta.get("title", ""))
    return text, [(a + at, b + at) for a, b in spans]


def sentence_key(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """The name of the vectors of sentences `spans` of embedded `text`."""
    raw = json.dumps([text, [list(s) for s in spans]], ensure_ascii=False).encode()
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


class SharedSentences:
    """Sentence vectors on the Chroma server (RAG_CHROMA_URL), in a collection beside the
    chunks (`<index>-sentences`), so that a replica reads what the writer computed: one
    record per key, the vectors as base64 float16 in its metadata, as they used to be in the
    chunks' own rows. The server's disk pays for them as before; the chunks' rows, which
    every question reads, stay small. Chroma wants a vector for every record: one of
    length 1."""

    def __init__(self, collection, step: int):
        self.collection = collection
        self.step = step

    def get(self, keys: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for part in _pages(list(keys), self.step):
            page = self.collection.get(ids=part, include=["metadatas"])
            for key, meta in zip(page["ids"], page["metadatas"], strict=True):
                if meta and meta.get("vectors"):
                    found[key] = base64.b64decode(meta["vectors"])
        return found

    def put(self, rows: Sequence[tuple[str, bytes]]) -> None:
        for part in _pages(list(rows), self.step):
            self.collection.upsert(
                ids=[key for key, _ in part],
                # Spread out, not all equal: HNSW inserts identical points more slowly
                # (100k records: 12.7 s all [0.0], 11.2 s spread; measured embedded).
                embeddings=[[int(key[:8], 16) / 2**32] for key, _ in part],
                metadatas=[{"vectors": base64.b64encode(data).decode()} for _, data in part],
            )

    def delete(self, keys: Sequence[str]) -> None:
        for part in _pages(list(keys), self.step):
            self.collection.delete(ids=part)

    def clear(self) -> None:
        self.delete(self.collection.get(include=[])["ids"])


class SentenceVectors:
    """Sentence vectors by `sentence_key`; safe to share between threads and processes.

    Kept in a SQLite file of the data dir; with a Chroma server, also there (`shared`), and
    the file is this replica's copy of what it has read. `embeddings` computes the ones
    asked for and held nowhere (`LazyEmbeddings`)."""

    def __init__(self, path: Path, embeddings, shared: SharedSentences | None = None):
        self.path = path
        self.embeddings = embeddings
        self.shared = shared
        self._db = PerThread(path)
        self._db().execute(_SCHEMA)

    def put(self, keys: Sequence[str], vectors: Sequence[np.ndarray]) -> None:
        rows = [
            (key, np.asarray(v, dtype="<f2").tobytes())
            for key, v in zip(keys, vectors, strict=True)
        ]
        if self.shared is not None:
            self.shared.put(rows)
        self._keep(rows)

    def _keep(self, rows: Sequence[tuple[str, bytes]]) -> None:
        if not rows:
            return
        with self._db.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)", rows)

    def get(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The vectors held of `keys`, flat float32 (a row's sentences one after another)."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, bytes] = {}
        for part in _pages(wanted, _READ_STEP):
            marks = ",".join("?" * len(part))
            found.update(
                self._db().execute(f"SELECT key, data FROM vectors WHERE key IN ({marks})", part)
            )
        if self.shared is not None and len(found) < len(wanted):
            fetched = self.shared.get([k for k in wanted if k not in found])
            try:
                self._keep(list(fetched.items()))
            except sqlite3.Error:  # the question has them; the copy only saves a later read
                log.warning(
                    "could not keep a copy of %d sentence vectors", len(fetched), exc_info=True
                )
            found.update(fetched)
        return {k: np.frombuffer(v, dtype="<f2").astype(np.float32) for k, v in found.items()}

    def delete(self, keys: set[str]) -> None:
        wanted = sorted(keys)
        if self.shared is not None:
            self.shared.delete(wanted)
        db = self._db()
        for part in _pages(wanted, _READ_STEP):
            db.execute(f"DELETE FROM vectors WHERE key IN ({','.join('?' * len(part))})", part)

    def count(self) -> int:
        return self._db().execute("SELECT count(*) FROM vectors").fetchone()[0]

    def clear(self) -> None:
        if self.shared is not None:
            self.shared.clear()
        self._db().execute("DELETE FROM vectors")

    def of(self, stored: Sequence[Stored]) -> list[np.ndarray]:
        """Each row's sentence vectors, one row per sentence of its `sentence_spans`.

        A row an older version wrote brings its own (in its metadata). The others are read
        here; a row whose vectors are kept nowhere (their file was lost or removed), or
        whose blob is damaged, has them computed now, logged, and kept."""
        keys = [key_of(s) if _needs(s) else "" for s in stored]
        wanted = {k: s for k, s in zip(keys, stored, strict=True) if k}
        found = self.get(list(wanted)) if wanted else {}
        missing = {k: s for k, s in wanted.items() if k not in found or not _fits(found[k], s)}
        if missing:
            found.update(self._compute(missing))
        return [
            found[k].reshape(len(s.sentence_spans), -1) if k else s.legacy_vectors
            for k, s in zip(keys, stored, strict=True)
        ]

    def _compute(self, stored: dict[str, Stored]) -> dict[str, np.ndarray]:
        """The vectors of rows `stored` (by key), from the model."""
        inputs = [framed(s.chunk, s.sentence_spans) for s in stored.values()]
        _, vectors = self.embeddings.embed_chunks(
            [text for text, _ in inputs], [spans for _, spans in inputs]
        )
        # As stored: float16, so that a computed vector equals the one read back later.
        computed = {
            k: np.asarray(v, dtype="<f2").astype(np.float32).ravel()
            for k, v in zip(stored, vectors, strict=True)
        }
        # Kept only under a key that names the text they were computed from: after a title
        # edit (`Store.copy` keeps the key) it does not, and they serve this question alone.
        keep = [
            k
            for k, (text, spans) in zip(computed, inputs, strict=True)
            if k == sentence_key(text, spans)
        ]
        log.warning(
            "computed the sentence vectors of %d chunks they were not kept for (%d of them "
            "edited since: not kept this time either)",
            len(computed),
            len(computed) - len(keep),
        )
        try:
            self.put(keep, [computed[k] for k in keep])
        except Exception:  # the question has them; keeping them only saves the next one
            log.warning("could not keep %d computed sentence vectors", len(keep), exc_info=True)
        return computed


def key_of(stored: Stored) -> str:
    """A row's `sentence_key`, as written with it or (a row without one) from its text."""
    return stored.sentence_key or sentence_key(*framed(stored.chunk, stored.sentence_spans))


def _needs(stored: Stored) -> bool:
    """Whether a row's sentence vectors are to be read here (it has sentences, and its
    metadata did not bring their vectors)."""
    return bool(stored.sentence_spans) and not stored.legacy_vectors.size


def _fits(flat: np.ndarray, stored: Stored) -> bool:
    """Whether a blob holds a whole vector for each of the row's sentences (a damaged one
    does not, and would fail the question at its reshape)."""
    return flat.size > 0 and flat.size % len(stored.sentence_spans) == 0


def _pages(items: list, step: int) -> Iterator[list]:
    for i in range(0, len(items), step):
        yield items[i : i + step]
