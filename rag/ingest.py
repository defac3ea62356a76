"""Ingest: sources → changed documents → chunks → the index, incrementally.

An unchanged source (same raw bytes, same chunking) costs a hash and nothing else: it is
not parsed, not embedded, and the embedding model is not even loaded.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rag.index import DocEntry, Index
from rag.load import LoadFailure, Source, UnreadableError, iter_sources
from rag.split import chunk_spans
from rag.types import Chunk, Document

# Part of every source hash: bump it when loading, cleaning or splitting changes what a
# file turns into, so the next ingest redoes every document instead of keeping stale chunks.
PIPELINE_VERSION = 4

# Chunks per write: large enough that sentence-transformers batches efficiently, small
# enough that a killed run loses little work.
WRITE_BATCH_CHUNKS = 256


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: int = 0
    duplicates: int = 0
    chunks_written: int = 0
    chunks_removed: int = 0
    seconds: float = 0.0
    failures: list[LoadFailure] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "failed": self.failed,
            "duplicates": self.duplicates,
            "chunks_written": self.chunks_written,
            "chunks_removed": self.chunks_removed,
            "seconds": round(self.seconds, 3),
            "failures": [{"path": f.path, "reason": f.reason} for f in self.failures],
        }

    def fail(self, failure: LoadFailure) -> None:
        self.failed += 1
        self.failures.append(failure)


def make_chunks(doc: Document, size: int, overlap: int) -> list[Chunk]:
    return [
        Chunk(
            f"{doc.doc_id}#{n}", doc.doc_id, n, doc.text[s.start : s.end], s.start, s.end, doc.meta
        )
        for n, s in enumerate(chunk_spans(doc.text, size, overlap))
    ]


class Progress:
    """What ingest reports while it works; the CLI plugs a progress bar in here."""

    def start(self, total: int) -> None: ...
    def advance(self, n: int = 1) -> None: ...


def ingest(
    roots: Sequence[Path],
    index: Index,
    chunk_size: int,
    chunk_overlap: int,
    rebuild: bool = False,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> IngestReport:
    """Bring `index` in line with the documents under `roots`."""
    started = clock()
    progress = progress or Progress()
    report = IngestReport()
    settings_key = (
        f"v{PIPELINE_VERSION}/{chunk_size}/{chunk_overlap}/{index.embeddings.passage_prefix}"
    )

    with index.writing():
        if rebuild:
            index.reset()
        manifest = index.manifest
        pending: list[tuple[Source, str, bool, str]] = []
        seen: set[str] = set()
        scanned_origins: set[str] = set()
        for root in roots:
            origin = str(root.resolve())
            if root.exists():
                scanned_origins.add(origin)
            for item in iter_sources(root):
                if isinstance(item, LoadFailure):
                    report.fail(item)
                    continue
                if item.doc_id in seen:
                    report.fail(LoadFailure(item.location, f"duplicate id {item.doc_id!r}"))
                    continue
                seen.add(item.doc_id)
                entry = manifest.docs.get(item.doc_id)
                if entry and entry.origin != origin:
                    if Path(entry.origin).exists():
                        report.fail(
                            LoadFailure(
                                item.location,
                                f"id {item.doc_id!r} is already indexed from {entry.origin}",
                            )
                        )
                        continue
                    index.relocate(item.doc_id, origin)  # its folder was moved or renamed
                source_hash = _source_hash(item.raw_hash, settings_key)
                if entry and entry.source_hash == source_hash:
                    report.unchanged += 1
                else:
                    pending.append((item, source_hash, entry is not None, origin))

        gone = [
            doc_id
            for doc_id, entry in manifest.docs.items()
            if entry.origin in scanned_origins and doc_id not in seen
        ]
        report.chunks_removed += index.remove(gone)
        report.removed = len(gone)

        progress.start(len(pending))
        changing = {source.doc_id for source, *_ in pending}
        known_texts = {e.text_hash: d for d, e in manifest.docs.items() if d not in changing}
        batch: list[tuple[str, DocEntry, list[Chunk]]] = []
        batch_chunks = 0
        for source, source_hash, existed, origin in pending:
            progress.advance()
            try:
                doc = source.load()
            except UnreadableError as err:
                kept = "; the previously indexed version is kept" if existed else ""
                report.fail(LoadFailure(source.location, f"{err}{kept}"))
                continue
            text_hash = doc.content_hash
            twin = known_texts.get(text_hash)
            if twin is not None and twin != doc.doc_id:
                report.duplicates += 1
                report.failures.append(
                    LoadFailure(source.location, f"same text as {twin!r}; skipped")
                )
                if existed:  # its old text is gone; its old chunks must go too
                    report.chunks_removed += index.remove([doc.doc_id])
                continue
            known_texts[text_hash] = doc.doc_id
            chunks = make_chunks(doc, chunk_size, chunk_overlap)
            batch.append(
                (doc.doc_id, DocEntry(source_hash, text_hash, len(chunks), origin), chunks)
            )
            batch_chunks += len(chunks)
            report.updated += existed
            report.added += not existed
            report.chunks_written += len(chunks)
            if batch_chunks >= WRITE_BATCH_CHUNKS:
                index.write(batch)
                batch, batch_chunks = [], 0
        index.write(batch)
    report.seconds = clock() - started
    return report


def _source_hash(raw_hash: str, settings_key: str) -> str:
    return hashlib.sha256(f"{raw_hash}/{settings_key}".encode()).hexdigest()[:32]
