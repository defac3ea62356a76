"""Ingest: sources → changed documents → chunks → the index, incrementally.

An unchanged source (same raw bytes, same chunking) costs a hash and nothing else: it is
not parsed, not embedded, and the embedding model is not even loaded.

Work is published in generations (rag.index) as it goes (`Writer.commit_due`) and at the
end, so a killed run keeps what it had published and a server's readers see new
documents while a long run goes on.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from rag.articles import headings, in_force
from rag.index import COMMIT_CHUNKS, Cancelled, Index, Writer
from rag.load import LoadFailure, Source, UnreadableError, iter_sources
from rag.manifest import DocEntry
from rag.split import chunk_spans
from rag.types import Chunk, Document

# Part of every source hash: bump it when loading, cleaning or splitting changes what a
# file turns into, so the next ingest redoes every document instead of keeping stale chunks.
PIPELINE_VERSION = 8

log = logging.getLogger("rag.ingest")

DEFAULT_KB = "default"


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


def with_corrections(doc: Document, entry: DocEntry | None) -> tuple[Document, str]:
    """`doc` with the metadata a person corrected on its indexed version (and that record,
    to keep): every path that reads a document again — `rag ingest`, its rebuild, a
    server re-index — keeps a corrected title or date over the file's own."""
    if entry is None or not entry.corrected:
        return doc, ""
    return replace(doc, meta={**doc.meta, **entry.corrections()}), entry.corrected


def discard_original(data_dir: Path, manifest, original: str) -> None:
    """Delete an upload's kept original (under data_dir/originals) that no document names
    any more. Each upload is kept under its own path (`api.documents.keep`), so this is
    the only way one goes; a file `rag ingest` read stays where it is."""
    if not original:
        return
    originals = (data_dir / "originals").resolve()
    path = (data_dir / original).resolve()
    if not path.is_relative_to(originals) or any(
        e.original == original for e in manifest.docs().values()
    ):
        return
    remove_kept(path, originals)


def remove_kept(path: Path, originals: Path) -> None:
    """Delete a kept file and the folders under `originals` it leaves empty."""
    try:
        path.unlink(missing_ok=True)
    except OSError as err:  # kept on disk, served by nothing: say so, go on
        log.warning("could not remove the kept original %s: %s", path, err)
        return
    for folder in path.parents:  # the version's folder, and any left empty above it
        if folder == originals:
            break
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue
        except OSError:  # not empty: other files are kept there
            break


def make_chunks(doc: Document, size: int, overlap: int) -> list[Chunk]:
    """The document's chunks; each names the article in force where it begins (第七条),
    and in a paged format the page."""

    starts = headings(doc.text)

    def meta(start: int, end: int) -> dict[str, str]:
        own = {"article": in_force(starts, start)} if starts else {}
        page = doc.page_at(start)
        if page is not None:
            # Pages that begin inside the chunk, as offsets into its text: a citation names
            # the page of the sentence it quotes, not of the chunk's first line.
            breaks = [p - start for p in doc.page_starts if start < p < end]
            own.update(page=str(page), page_breaks=",".join(map(str, breaks)))
        return {**doc.meta, **own} if own else doc.meta

    return [
        Chunk(
            f"{doc.doc_id}#{n}",
            doc.doc_id,
            n,
            doc.text[s.start : s.end],
            s.start,
            s.end,
            meta(s.start, s.end),
        )
        for n, s in enumerate(chunk_spans(doc.text, size, overlap))
    ]


def doc_entry(doc: Document, kb: str, origin: str, source_hash: str, original: str) -> DocEntry:
    """The manifest's record of `doc` (its chunk count and generation are the writer's)."""
    meta = doc.meta
    return DocEntry(
        doc_id=doc.doc_id,
        kb=kb,
        origin=origin,
        source_hash=source_hash,
        text_hash=doc.content_hash,
        chunks=0,
        gen=0,
        title=meta.get("title", ""),
        date=meta.get("date", ""),
        source=meta.get("source", ""),
        doc_type=meta.get("doc_type", ""),
        original=original,
    )


class Progress:
    """What ingest reports while it works; the CLI plugs a progress bar in here."""

    def start(self, total: int) -> None: ...
    def advance(self, n: int = 1) -> None: ...


def settings_key(index: Index, chunk_size: int, chunk_overlap: int) -> str:
    return f"v{PIPELINE_VERSION}/{chunk_size}/{chunk_overlap}/{index.embeddings.passage_prefix}"


def _original(source: Source) -> str:
    """Where the document's file is, to link a citation to it ("" for a JSONL record)."""
    return str(Path(source.location).resolve()) if Path(source.location).is_file() else ""


def source_hash(raw_hash: str, key: str) -> str:
    return hashlib.sha256(f"{raw_hash}/{key}".encode()).hexdigest()[:32]


def ingest(
    roots: Sequence[Path],
    index: Index,
    chunk_size: int,
    chunk_overlap: int,
    rebuild: bool = False,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.perf_counter,
    kb: str = DEFAULT_KB,
    writer: Writer | None = None,
    cancelled: Callable[[], bool] | None = None,
    commit_chunks: int = COMMIT_CHUNKS,
    mirror: bool = False,
    confirm: Callable[[list[str]], bool] | None = None,
) -> IngestReport:
    """Bring `index` in line with the documents under `roots` (into knowledge base `kb`).
    With `writer`, work inside that writer (a server job); else open one.

    Only documents that came from these folders are ever replaced or removed: uploads,
    other folders and other knowledge bases are not this run's to touch, with or without
    `rebuild`. `mirror` makes knowledge base `kb` equal to the folders: it also removes
    every other document of `kb` (uploads included), once `confirm(doc_ids)` agrees."""
    if writer is None:
        with index.writer() as own:
            return ingest(
                roots,
                index,
                chunk_size,
                chunk_overlap,
                rebuild=rebuild,
                progress=progress,
                clock=clock,
                kb=kb,
                writer=own,
                cancelled=cancelled,
                commit_chunks=commit_chunks,
                mirror=mirror,
                confirm=confirm,
            )
    started = clock()
    progress = progress or Progress()
    report = IngestReport()
    key = settings_key(index, chunk_size, chunk_overlap)
    docs = index.manifest.docs()
    if rebuild and not docs:  # opened anew (another version wrote it): clear its store too
        writer.reset()
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
            entry = docs.get(item.doc_id)
            if entry and entry.origin != origin and Path(entry.origin).exists():
                report.fail(
                    LoadFailure(
                        item.location, f"id {item.doc_id!r} is already indexed from {entry.origin}"
                    )
                )
                continue
            digest = source_hash(item.raw_hash, key)
            if entry and entry.source_hash == digest and entry.kb == kb and not rebuild:
                report.unchanged += 1
                if entry.origin != origin:  # its folder was moved or renamed: same chunks
                    index.manifest.relocate(item.doc_id, origin, _original(item))
            else:
                pending.append((item, digest, entry is not None, origin))

    # Files gone from the folders read; with `mirror`, every other document of `kb` too.
    gone = [
        doc_id
        for doc_id, entry in docs.items()
        if doc_id not in seen and (entry.origin in scanned_origins or (mirror and entry.kb == kb))
    ]
    if mirror and confirm is not None and not confirm(sorted(gone)):
        raise Cancelled()
    # A rebuild drops them with its last publish: one stopped half way leaves the index
    # whole, part rebuilt and part as it was.
    if not rebuild:
        report.chunks_removed += writer.remove(gone)
    report.removed = len(gone)

    progress.start(len(pending))
    # Texts indexed under ids that stay: a renamed file's text was under an id now gone.
    staying = docs.keys() - {source.doc_id for source, *_ in pending} - set(gone)
    known_texts = {docs[d].text_hash: d for d in staying}
    for source, digest, existed, origin in pending:
        progress.advance()
        try:
            doc = source.load()
        except UnreadableError as err:
            kept = "; the previously indexed version is kept" if existed else ""
            report.fail(LoadFailure(source.location, f"{err}{kept}"))
            continue
        twin = known_texts.get(doc.content_hash)
        if twin is not None and twin != doc.doc_id:
            report.duplicates += 1
            report.failures.append(LoadFailure(source.location, f"same text as {twin!r}; skipped"))
            if existed:  # its old text is gone; its old chunks must go too
                report.chunks_removed += writer.remove([doc.doc_id])
            continue
        known_texts[doc.content_hash] = doc.doc_id
        # Indexed, but part of it could not be read (a page OCR found no text on): said.
        report.failures += [LoadFailure(source.location, note) for note in doc.notes]
        doc, corrected = with_corrections(doc, docs.get(doc.doc_id))
        chunks = make_chunks(doc, chunk_size, chunk_overlap)
        entry = doc_entry(doc, kb, origin, digest, _original(source))
        writer.put(replace(entry, corrected=corrected), chunks, cancelled=cancelled)
        report.updated += existed and not rebuild
        report.added += not existed or rebuild
        report.chunks_written += len(chunks)
        if writer.commit_due(commit_chunks):
            writer.commit(cancelled)
    if rebuild:
        report.chunks_removed += writer.remove(gone)
    writer.commit(cancelled)
    for doc_id in gone:  # an upload `mirror` removed leaves no kept file behind
        discard_original(index.data_dir, index.manifest, docs[doc_id].original)
    report.seconds = clock() - started
    return report
