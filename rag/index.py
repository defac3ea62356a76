"""The index readers and writers use: the vector store, the manifest and the lexical
index of one collection, kept consistent by generations.

Readers take a `Snapshot` per question: one generation's lexical index and a filter that
shows them exactly that generation's rows in the vector store. Checking for a newer
generation costs one SQLite query, so a running server follows every ingest.

One `Writer` at a time (a file lock): it stages new rows under the next generation
(invisible to readers; each batch's sentence vectors are kept first, `rag.sentences`),
then publishes in order — lexical index saved in its own folder,
replaced rows marked dead, manifest transaction (the commit point), old rows collected.
A writer killed at any point leaves the published generation intact; the next writer
removes what it had staged.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from rag.embed import LazyEmbeddings, model_slug
from rag.lexical import FILTER_FIELDS, LexicalIndex, LexicalRow
from rag.manifest import FORMAT, ChromaManifest, DocEntry, Manifest, edited, now
from rag.sentences import SentenceVectors, SharedSentences, framed, sentence_key
from rag.split import sentence_spans, with_title
from rag.store import Store, Stored, date_int, record_id, sentence_keys, visible
from rag.types import Chunk

log = logging.getLogger("rag.index")

DENSE_SPARE = 5  # unfiltered rows read beyond the k wanted before asking Chroma to filter

# Chunks per model call. Within a call the texts are sorted by length, so a larger call
# pads less (rag ingest: 128); a server job uses short ones, to pause often.
EMBED_BATCH = 128

# A replica's write lease on a Chroma server; renewed before every embedding batch
# (seconds apart), so only a writer that died lets it run out.
LEASE_SECONDS = 120.0

# A long run publishes a generation every COMMIT_CHUNKS chunks (RAG_COMMIT_CHUNKS) or
# COMMIT_SECONDS, so a killed run loses little, but no sooner than COMMIT_SPACING times
# the last commit's duration (Writer.commit_due).
COMMIT_CHUNKS = 2000
COMMIT_SECONDS = 60.0
COMMIT_SPACING = 10.0


class Cancelled(Exception):
    """A writer was asked to stop; nothing it staged is published."""


class IndexBusy(RuntimeError):
    """Another process holds the index's write lock."""


@dataclass(frozen=True)
class Filters:
    """Metadata filters applied inside both retrievers."""

    since: str = ""  # YYYY-MM-DD, inclusive
    until: str = ""
    source: str = ""
    doc_type: str = ""
    kbs: frozenset[str] = frozenset()  # knowledge bases to search; empty = all
    exclude_docs: frozenset[str] = frozenset()  # e.g. to ask as if these were not indexed
    # The knowledge bases the asker may read (their grant, rag.access); None = no limit.
    # Applied here, inside both retrievers, so no route can forget it.
    readable: frozenset[str] | None = None

    def __bool__(self) -> bool:
        return self.readable is not None or any(
            (self.since, self.until, self.source, self.doc_type, self.kbs, self.exclude_docs)
        )

    def chroma_clauses(self) -> list[dict]:
        clauses: list[dict] = []
        if self.since:
            clauses.append({"date_int": {"$gte": date_int(self.since)}})
        if self.until:  # undated documents (date_int 0) are outside any date range
            clauses.append({"date_int": {"$lte": date_int(self.until)}})
            clauses.append({"date_int": {"$gt": 0}})
        if self.source:
            clauses.append({"source": self.source})
        if self.doc_type:
            clauses.append({"doc_type": self.doc_type})
        if self.kbs:
            clauses.append({"kb": {"$in": sorted(self.kbs)}})
        if self.exclude_docs:
            clauses.append({"doc_id": {"$nin": sorted(self.exclude_docs)}})
        if self.readable is not None:  # "/" is no knowledge base's name: nothing readable
            clauses.append({"kb": {"$in": sorted(self.readable) or ["/"]}})
        return clauses

    def mask(self, lexical: LexicalIndex) -> np.ndarray:
        """Which rows of a lexical index (from its per-row filter fields) pass."""
        dates, fields = np.asarray(lexical.dates), lexical.fields
        keep = np.ones(len(dates), dtype=bool)
        if self.since:
            keep &= dates >= date_int(self.since)
        if self.until:
            keep &= (dates > 0) & (dates <= date_int(self.until))
        if self.source:
            keep &= fields["source"].isin([self.source])
        if self.doc_type:
            keep &= fields["doc_type"].isin([self.doc_type])
        if self.kbs:
            keep &= fields["kb"].isin(self.kbs)
        if self.exclude_docs:
            keep &= ~fields["doc_id"].isin(self.exclude_docs)
        if self.readable is not None:
            keep &= fields["kb"].isin(self.readable)
        return keep


def collection_name(name: str, model: str) -> str:
    """One Chroma collection per (corpus name, embedding model): switching models does not
    mix vectors from two models in one index (the manifest also records the model)."""
    raw = f"{name}-{model_slug(model)}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-._")


@dataclass(frozen=True)
class Snapshot:
    """What one question reads: a single generation of the index."""

    generation: int
    lexical: LexicalIndex
    store: Store
    sentences: SentenceVectors
    documents: int
    chunks: int

    def where(self, filters: Filters | None) -> dict:
        clauses = [visible(self.generation), *(filters.chroma_clauses() if filters else [])]
        return {"$and": [c for part in clauses for c in part.get("$and", [part])]}

    def dense_search(
        self, query_vector: np.ndarray, k: int, filters: Filters | None = None
    ) -> list[Stored]:
        """Top `k` chunks of this generation by cosine similarity to `query_vector`.

        Chroma evaluates any `where` over every row's metadata: 50–80 ms on 11k chunks,
        where the vector search itself takes 2–4 ms (bench/README.md, Latency). So the
        nearest k + `DENSE_SPARE` rows are fetched unfiltered and kept when this
        generation's lexical index, which holds exactly its visible chunks and their
        filter fields, says they are visible and pass `filters`. Only when too few pass
        (a narrow filter, or a running ingest's rows in the way) is Chroma asked to filter.
        """
        fetch = k + DENSE_SPARE
        nearest = self.store.query(query_vector, fetch, None)
        mask = self.lexical_mask(filters)
        kept = []
        for stored in nearest:
            row = self.lexical.row.get(stored.chunk.chunk_id)
            if row is None or self.lexical.record_ids[row] != stored.record_id:
                continue  # another generation's row
            if mask is None or mask[row]:
                kept.append(stored)
        if len(kept) >= k or len(nearest) < fetch:
            return kept[:k]
        return self.store.query(query_vector, k, self.where(filters))

    def get(self, chunk_ids: Sequence[str], query_vector: np.ndarray | None = None) -> list[Stored]:
        """Chunks of this generation by chunk id, scored against `query_vector` if given."""
        rows = [self.lexical.row.get(cid) for cid in chunk_ids]
        return self.store.get(
            [self.lexical.record_ids[r] for r in rows if r is not None], query_vector
        )

    def document_rows(self, doc_id: str) -> list[LexicalRow]:
        """A document's chunks as this generation indexed them (title in front), in order."""
        ids = []
        while (row := self.lexical.row.get(f"{doc_id}#{len(ids)}")) is not None:
            ids.append(self.lexical.record_ids[row])
        return [lexical_row(*row) for row in self.store.rows(ids)]

    def document_text(self, doc_id: str) -> str:
        return "\n".join(row.text for row in self.document_rows(doc_id))

    def sentence_vectors(self, stored: Sequence[Stored]) -> list[np.ndarray]:
        """Each row's in-context sentence vectors (`rag.sentences`)."""
        return self.sentences.of(stored)

    def lexical_mask(self, filters: Filters | None) -> np.ndarray | None:
        """Rows of the lexical index that pass `filters` (None = all)."""
        return filters.mask(self.lexical) if filters else None


class Index:
    def __init__(
        self,
        data_dir: Path,
        name: str,
        embeddings: LazyEmbeddings,
        chroma_url: str = "",
        writer_embeddings: LazyEmbeddings | None = None,
        fresh: bool = False,
    ):
        """`fresh`: forget what an earlier index of this name held (for --rebuild, also
        of an index an older version wrote)."""
        self.data_dir = data_dir
        self.name = collection_name(name, embeddings.model)
        self.embeddings = embeddings
        # Ingest embeds with a model of its own, so that a long job never holds the one
        # that answers questions (tokenizers are not thread-safe: one user per model).
        self.writer_embeddings = writer_embeddings or embeddings
        self.folder = data_dir / "indexes" / self.name
        if fresh:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        if (self.folder / "manifest.json").exists():
            raise RuntimeError(
                f"{self.folder} was written by an older version of this program; "
                "run `rag ingest --rebuild`"
            )
        self.store = Store(
            self.name, embeddings, path=None if chroma_url else data_dir / "chroma", url=chroma_url
        )
        # With a Chroma server the manifest lives there too, so replicas share everything
        # they answer from; the data dir keeps only what each can derive again (the
        # lexical index, a cache per generation).
        self.manifest: Manifest | ChromaManifest = (
            ChromaManifest(self.store.companion("manifest"), self.store.max_batch)
            if chroma_url
            else Manifest(self.folder / "manifest.sqlite")
        )
        if self.manifest.format != FORMAT:
            raise RuntimeError(
                f"{self.folder} was written by another version of this program; "
                "run `rag ingest --rebuild`"
            )
        if self.manifest.model and self.manifest.model != embeddings.model:
            raise RuntimeError(
                f"index {self.name!r} was built with the embedding model "
                f"{self.manifest.model!r}, not {embeddings.model!r}; use the same model, "
                "another RAG_COLLECTION, or `rag ingest --rebuild`"
            )
        self.sentences = SentenceVectors(
            self.folder / "sentences.sqlite",
            embeddings,
            SharedSentences(self.store.companion("sentences"), self.store.max_batch)
            if chroma_url
            else None,
        )
        self.lease_owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._snapshot: Snapshot | None = None
        self._snapshot_lock = threading.Lock()
        self._readers = 0  # questions being retrieved in this process
        self._readers_changed = threading.Condition()

    # -- reading --------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The current generation, loaded once per generation (a reader that finds a newer
        one than it holds loads it; the others keep answering meanwhile)."""
        gen = self.manifest.generation
        snap = self._snapshot
        if snap is not None and snap.generation == gen:
            return snap
        with self._snapshot_lock:
            snap = self._snapshot
            if snap is None or snap.generation != gen:
                snap = self._load_snapshot(gen)
                self._snapshot = snap
        return snap

    @contextmanager
    def reading(self) -> Iterator[Snapshot]:
        """A snapshot for one question, counted so that a writer can give way to it."""
        with self._readers_changed:
            self._readers += 1
        try:
            yield self.snapshot()
        finally:
            with self._readers_changed:
                self._readers -= 1
                self._readers_changed.notify_all()

    def give_way(self, max_wait: float) -> None:
        """Wait (at most `max_wait` s) until no question is being retrieved: a writer calls
        this before each embedding batch, so answers come first and ingest still advances."""
        with self._readers_changed:
            self._readers_changed.wait_for(lambda: self._readers == 0, timeout=max_wait)

    def _load_snapshot(self, gen: int) -> Snapshot:
        lexical = LexicalIndex.load(self.lexical_dir(gen))
        if lexical is None:  # another replica's generation, an older format, or removed
            lexical = self._derive_lexical(gen)
            with self._lock(wait=False) as held:
                if held and self.manifest.generation == gen:
                    lexical.save(self.lexical_dir(gen))
        documents, chunks = self.manifest.totals()
        return Snapshot(gen, lexical, self.store, self.sentences, documents, chunks)

    def _derive_lexical(self, gen: int) -> LexicalIndex:
        """Generation `gen`'s lexical index, from the store. A replica that holds an
        earlier generation reads only the documents written since (one ingest's worth),
        and the ids of those still there; any other reads every row once."""
        held = self._snapshot
        if held is not None and held.generation < gen and isinstance(self.manifest, ChromaManifest):
            changed, present = self.manifest.changed_since(held.generation, gen)
            log.info(
                "following generation %d → %d: %d documents written since",
                held.generation,
                gen,
                len(changed),
            )
            rows = []
            for i in range(0, len(changed), self.store.max_batch):
                where = visible(gen, {"doc_id": {"$in": changed[i : i + self.store.max_batch]}})
                rows.extend(
                    lexical_row(rid, text, meta) for rid, text, meta in self.store.iter_rows(where)
                )
            gone = set(held.lexical.fields["doc_id"].values.tolist()) - present
            return held.lexical.derive(gone | set(changed), rows)
        log.info("building the lexical index of generation %d from the store", gen)
        rows = [
            lexical_row(rid, text, meta) for rid, text, meta in self.store.iter_rows(visible(gen))
        ]
        return LexicalIndex.build(rows)

    def _adopt(self, gen: int, lexical: LexicalIndex) -> None:
        """A writer in this process published `gen`: no need to load it again."""
        documents, chunks = self.manifest.totals()
        with self._snapshot_lock:
            self._snapshot = Snapshot(gen, lexical, self.store, self.sentences, documents, chunks)

    @property
    def current(self) -> Snapshot | None:
        """The snapshot loaded last, without a generation check (None before any)."""
        return self._snapshot

    @property
    def lexical(self) -> LexicalIndex:
        """The lexical index last loaded (no generation check: for term statistics, which
        a question may read many times)."""
        snap = self._snapshot
        return snap.lexical if snap is not None else self.snapshot().lexical

    def count(self) -> int:
        """Chunks of the current generation."""
        return self.manifest.totals()[1]

    def collect(self, gen: int) -> None:
        """Delete the rows no reader at generation `gen` or later can see, and the sentence
        vectors only they named."""
        self.forget_vectors(self.store.collect(gen))

    def recover(self) -> None:
        """Remove what a writer staged and did not publish: its documents, its rows, and
        the sentence vectors only they named."""
        self.manifest.recover()
        self.forget_vectors(self.store.recover(self.manifest.generation))

    def forget_vectors(self, keys: set[str]) -> None:
        """Delete the sentence vectors of `keys` that no row names any more (a document
        replaced with most chunks unchanged keeps those chunks' vectors: its new rows name
        them too)."""
        if keys:
            self.sentences.delete(keys - self.store.sentence_keys_in(keys))

    def lexical_dir(self, gen: int) -> Path:
        return self.folder / "lexical" / f"g{gen:09d}"

    # -- writing --------------------------------------------------------------------------

    @contextmanager
    def _lock(self, wait: bool) -> Iterator[bool]:
        """The cross-process write lock: yields whether this process holds it."""
        with open(self.folder / "write.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True

    @contextmanager
    def _lease(self, wait: bool) -> Iterator[None]:
        """With a Chroma server, the writer's lease there (replicas have no file to lock
        in common); embedded, the file lock is all there is."""
        if not isinstance(self.manifest, ChromaManifest):
            yield
            return
        while not self.manifest.take_lease(self.lease_owner, LEASE_SECONDS):
            if not wait:
                raise IndexBusy("another replica is writing to this index; wait for it")
            time.sleep(1.0)
        try:
            yield
        finally:
            self.manifest.release_lease(self.lease_owner)

    def renew_lease(self) -> None:
        """A writer still at work says so before its lease runs out."""
        if isinstance(self.manifest, ChromaManifest) and not self.manifest.renew_lease(
            self.lease_owner, LEASE_SECONDS
        ):
            raise IndexBusy("another replica took this index's write lease")

    @contextmanager
    def writer(
        self,
        wait: bool = False,
        before_batch: Callable[[], None] | None = None,
        batch: int = EMBED_BATCH,
    ):
        """The one writer: exclusive across processes (and replicas). What it has not
        committed when the block ends (an exception, a cancel) is thrown away; the rest is
        committed. `before_batch` runs before each embedding batch of `batch` chunks."""
        with self._lock(wait) as held:
            if not held:
                raise IndexBusy(f"another process is writing to {self.folder}; wait for it")
            with self._lease(wait):
                # Scanning for a dead writer's rows costs a second at 100k chunks: only
                # when one may have died (the flag each writer sets and clears).
                if self.manifest.staging:
                    log.info("a writer stopped before it finished: removing what it staged")
                    self.recover()
                writer_model = self.writer_embeddings
                if (self.manifest.model, self.manifest.embed_backend) != (
                    writer_model.model,
                    writer_model.backend,
                ):
                    self.manifest.set_model(writer_model.model, writer_model.backend)
                writer = Writer(self, before_batch or (lambda: None), batch)
                try:
                    yield writer
                except BaseException:
                    writer.abort()
                    raise
                writer.commit()
                self.manifest.set_staging(False)


@dataclass
class _Staged:
    entry: DocEntry
    chunks: list[Chunk]
    done: int = 0  # chunks embedded and written so far


@dataclass
class Writer:
    """Stages changes under the next generation; `commit` publishes them at once."""

    index: Index
    before_batch: Callable[[], None] = lambda: None
    batch: int = EMBED_BATCH
    gen: int = 0
    _put: dict[str, DocEntry] = field(default_factory=dict)
    _drop: set[str] = field(default_factory=set)  # documents whose published rows die
    _rows: list[LexicalRow] = field(default_factory=list)
    _queue: list[_Staged] = field(default_factory=list)  # not yet fully embedded
    _committed_at: float = field(default_factory=time.monotonic)
    _commit_seconds: float = 0.0  # what the last commit took

    def __post_init__(self) -> None:
        self.gen = self.index.manifest.generation + 1
        self.manifest.set_staging(True)  # cleared when it ends cleanly

    def commit_due(self, chunks: int = COMMIT_CHUNKS, seconds: float = COMMIT_SECONDS) -> bool:
        """Whether a long run should publish what it staged now (`commit_due`)."""
        since = time.monotonic() - self._committed_at
        return commit_due(self.pending(), since, self._commit_seconds, chunks, seconds)

    @property
    def manifest(self) -> Manifest:
        return self.index.manifest

    def pending(self) -> int:
        """Chunks staged since the last commit."""
        return len(self._rows) + sum(len(s.chunks) - s.done for s in self._queue)

    def put(
        self,
        entry: DocEntry,
        chunks: list[Chunk],
        progress: Callable[[int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> None:
        """Stage a document (replacing its published version). Its chunks are embedded in
        batches as they fill up; `progress(n)` is told of every `n` chunks written."""
        entry = replace(entry, gen=self.gen, chunks=len(chunks), updated=now())
        self._unstage(entry.doc_id)
        if not chunks:
            self._put[entry.doc_id] = entry
            self._drop.add(entry.doc_id)
            return
        self._queue.append(_Staged(entry, chunks))
        self._flush(progress, cancelled, full_only=True)

    def _unstage(self, doc_id: str) -> None:
        """Forget a version of `doc_id` staged earlier in this generation, whether written
        or still queued (two in one batch would write one record id twice), and the
        sentence vectors only it named."""
        staged = self._put.pop(doc_id, None)
        written = [record_id(cid, self.gen) for cid in staged.chunk_ids()] if staged else []
        for queued in [s for s in self._queue if s.entry.doc_id == doc_id]:
            self._queue.remove(queued)
            written += [record_id(c.chunk_id, self.gen) for c in queued.chunks[: queued.done]]
        if written:
            keys = sentence_keys([meta for _, _, meta in self.index.store.rows(written)])
            self.index.store.delete(written)
            self.index.forget_vectors(keys)
            self._rows = [r for r in self._rows if r.fields.get("doc_id") != doc_id]

    def remove(self, doc_ids: Sequence[str]) -> int:
        """Stage the removal of documents; returns how many chunks they had."""
        removed = 0
        for doc_id in doc_ids:
            self._unstage(doc_id)
            entry = self.manifest.get(doc_id)
            if entry is not None:
                self._drop.add(doc_id)
                removed += entry.chunks
        return removed

    def edit(self, doc_id: str, changes: dict[str, str]) -> DocEntry:
        """Stage corrected metadata (title, date, source, doc_type) without re-embedding.
        The title each chunk was embedded and indexed with stays the old one until the
        document is ingested again: a corrected title is shown at once, searched later."""
        entry = self.manifest.get(doc_id)
        if entry is None:
            raise KeyError(doc_id)
        self._unstage(doc_id)
        new = edited(entry, changes, self.gen)
        meta_changes = {k: getattr(new, k) for k in ("title", "date", "source", "doc_type")}
        for rid, text, meta in self.index.store.copy(entry.record_ids(), self.gen, meta_changes):
            old = lexical_row(rid, text, meta)  # framed with the title it was indexed with
            self._rows.append(
                LexicalRow(
                    record_id(old.chunk_id, self.gen), old.chunk_id, old.text, lexical_fields(new)
                )
            )
        self._drop.add(doc_id)
        self._put[doc_id] = new
        return new

    def _flush(
        self,
        progress: Callable[[int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
        full_only: bool = False,
    ) -> None:
        """Embed and write queued chunks, a batch at a time (a batch may span documents:
        small files embed as efficiently as big ones; memory stays one batch)."""
        while self._queue:
            waiting = sum(len(s.chunks) - s.done for s in self._queue)
            if full_only and waiting < self.batch:
                return
            if cancelled and cancelled():
                raise Cancelled()
            self.before_batch()
            self.index.renew_lease()
            batch: list[tuple[_Staged, list[Chunk]]] = []
            size = 0
            for staged in self._queue:
                take = staged.chunks[staged.done : staged.done + self.batch - size]
                if take:
                    batch.append((staged, take))
                    size += len(take)
                if size >= self.batch:
                    break
            self._write(batch)
            for staged, take in batch:
                staged.done += len(take)
            while self._queue and self._queue[0].done == len(self._queue[0].chunks):
                staged = self._queue.pop(0)
                self._put[staged.entry.doc_id] = staged.entry
                self._drop.add(staged.entry.doc_id)
            if progress:
                progress(size)

    def _write(self, batch: list[tuple[_Staged, list[Chunk]]]) -> None:
        owners = [staged.entry for staged, take in batch for _ in take]
        chunks = [c for _, take in batch for c in take]
        spans = [[(s.start, s.end) for s in sentence_spans(c.text)] for c in chunks]
        inputs = [framed(c, chunk_spans) for c, chunk_spans in zip(chunks, spans, strict=True)]
        vectors, sentence_vectors = self.index.writer_embeddings.embed_chunks(
            [text for text, _ in inputs], [spans for _, spans in inputs]
        )
        keys = [sentence_key(text, spans) for text, spans in inputs]
        # Before the rows, so that no row is written without its vectors; a killed
        # writer's are removed with its rows (`Index.recover`).
        self.index.sentences.put(keys, sentence_vectors)
        self.index.store.add(
            chunks,
            self.gen,
            [e.kb for e in owners],
            [e.text_hash for e in owners],
            vectors,
            spans,
            keys,
        )
        for chunk, entry, (text, _) in zip(chunks, owners, inputs, strict=True):
            self._rows.append(
                LexicalRow(
                    record_id(chunk.chunk_id, self.gen), chunk.chunk_id, text, lexical_fields(entry)
                )
            )

    def commit(self, cancelled: Callable[[], bool] | None = None) -> int:
        """Publish everything staged as the next generation; returns the generation."""
        self._flush(cancelled=cancelled)
        if not self._drop and not self._put:
            return self.gen - 1
        started = time.monotonic()
        gen = self.gen
        self.index.renew_lease()
        base = self.index.snapshot()
        if base.generation != gen - 1:
            raise RuntimeError(f"index moved to generation {base.generation} under a writer")
        lexical = base.lexical.derive(self._drop, self._rows)
        lexical.save(self.index.lexical_dir(gen))
        dying = [
            rid
            for doc_id in self._drop
            if (entry := self.manifest.get(doc_id)) is not None
            for rid in entry.record_ids()
        ]
        self.index.store.mark_dead(dying, gen)
        self.manifest.publish(
            gen, self._put.values(), [d for d in self._drop if d not in self._put]
        )
        self.index._adopt(gen, lexical)
        log.info(
            "published generation %d: %d documents in, %d out, %d rows written",
            gen,
            len(self._put),
            len(self._drop - set(self._put)),
            len(self._rows),
        )
        # Rows that died a generation ago: only a reader older than that could want them.
        self.index.collect(gen - 1)
        for old in sorted((self.index.folder / "lexical").glob("g*")):
            if old.name < f"g{gen - 1:09d}":
                shutil.rmtree(old, ignore_errors=True)
        self._put, self._drop, self._rows, self._queue = {}, set(), [], []
        self.gen = gen + 1
        self._committed_at = time.monotonic()
        self._commit_seconds = self._committed_at - started
        return gen

    def abort(self) -> None:
        """Throw away what was staged since the last commit."""
        try:
            self.index.recover()
            self.manifest.set_staging(False)
        except Exception:  # the caller's exception matters more; the next writer retries
            log.exception("could not remove staged rows; the next writer will")
        self._put, self._drop, self._rows, self._queue = {}, set(), [], []

    def reset(self) -> None:
        """Forget every document (for --rebuild), published at once."""
        self.index.store.reset()
        self.index.sentences.clear()
        self.manifest.clear()
        self.index._adopt(self.manifest.generation, LexicalIndex.build([]))
        self.gen = self.manifest.generation + 1


def commit_due(pending: int, since: float, last_cost: float, chunks: int, seconds: float) -> bool:
    """Whether to publish `pending` staged chunks `since` seconds after the last commit
    (which took `last_cost`): after `chunks` chunks or `seconds`, but not before
    COMMIT_SPACING times the last commit's cost. A commit derives and saves the whole
    lexical index, so its cost grows with the index; spacing commits by their cost keeps
    them about a tenth of a run, and a run's work linear in its size instead of quadratic
    (a 1M-chunk ingest would spend hours committing every 2,000 chunks)."""
    if not pending or since < COMMIT_SPACING * last_cost:
        return False
    return pending >= chunks or since >= seconds


def lexical_fields(entry: DocEntry) -> dict:
    """A document's filter fields, as every one of its chunks carries them in BM25."""
    return {
        "date_int": date_int(entry.date),
        "source": entry.source,
        "doc_type": entry.doc_type,
        "doc_id": entry.doc_id,
        "kb": entry.kb,
    }


def lexical_row(rid: str, text: str, meta: dict) -> LexicalRow:
    """A stored chunk's BM25 row: what the writer indexed, its title in front."""
    indexed, _ = with_title(text, str(meta.get("title", "")))
    return LexicalRow(
        rid, str(meta.get("chunk_id", "")), indexed, {k: meta.get(k, "") for k in FILTER_FIELDS}
    )
