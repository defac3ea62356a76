"""The manifest: which documents the index holds, in which knowledge base, and the
generation that published them (SQLite, one row per document).

The generation is the index's commit point: a writer stages its rows in the vector store
and its lexical index in a folder of the next generation, then publishes everything with
one transaction here. A reader asks for the generation (a cheap query) on each request.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, astuple, dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path

from rag.db import PerThread
from rag.store import NEVER, collect, pages, recover, visible

FORMAT = 2  # bump when rows or metadata change shape: old indexes must be rebuilt

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS docs (
    doc_id TEXT PRIMARY KEY,
    kb TEXT NOT NULL,
    origin TEXT NOT NULL,
    source_hash TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    chunks INTEGER NOT NULL,
    gen INTEGER NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    date TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT '',
    doc_type TEXT NOT NULL DEFAULT '',
    original TEXT NOT NULL DEFAULT '',
    updated TEXT NOT NULL DEFAULT '',
    corrected TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS docs_kb ON docs (kb);
"""

EDITABLE = ("title", "date", "source", "doc_type")  # what a person may correct by hand
_KB_NAME = re.compile(r"^[^/\\\x00-\x1f.][^/\\\x00-\x1f]{0,49}$")


def check_kb_name(name: str) -> str:
    """A knowledge base name as a person types it (飞地经济, 内部资料): 1–50 characters,
    no slashes (it is a folder of kept originals), not starting with a dot."""
    name = " ".join((name or "").split())
    if not _KB_NAME.match(name):
        raise ValueError(
            "a knowledge base name is 1–50 characters, without / or \\ and not starting with ."
        )
    return name


@dataclass(frozen=True)
class DocEntry:
    doc_id: str
    kb: str
    origin: str  # the ingest root it came from: deletions are detected per root
    source_hash: str  # raw bytes (+ chunking settings): unchanged input → nothing to do
    text_hash: str  # cleaned text + metadata: finds exact duplicates across files
    chunks: int
    gen: int  # the generation its rows were written at: their ids are `doc_id#n@gen`
    title: str = ""
    date: str = ""
    source: str = ""
    doc_type: str = ""
    original: str = ""  # the kept original file, relative to the data dir ("" = none)
    updated: str = ""  # ISO time of the last change
    # The fields a person corrected ({"title": …} as JSON): a re-index of the same
    # original keeps them rather than what the file says.
    corrected: str = ""

    def corrections(self) -> dict[str, str]:
        return json.loads(self.corrected) if self.corrected else {}

    def chunk_ids(self) -> list[str]:
        return [f"{self.doc_id}#{n}" for n in range(self.chunks)]

    def record_ids(self) -> list[str]:
        return [f"{self.doc_id}#{n}@{self.gen}" for n in range(self.chunks)]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Manifest:
    """The SQLite manifest of one index; safe to share between threads and processes."""

    def __init__(self, path: Path):
        self.path = path
        self._db = PerThread(path)
        self._tx = self._db.transaction
        self._db().executescript(_SCHEMA)  # runs its own transaction
        columns = {row[1] for row in self._db().execute("PRAGMA table_info(docs)")}
        if "corrected" not in columns:  # a manifest an older version wrote
            try:
                self._db().execute("ALTER TABLE docs ADD COLUMN corrected TEXT NOT NULL DEFAULT ''")
            except sqlite3.OperationalError as err:  # another process added it just now
                if "duplicate column" not in str(err):
                    raise
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (str(FORMAT),))

    def _meta(self, key: str) -> str | None:
        row = self._db().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    @property
    def generation(self) -> int:
        return int(self._meta("generation") or 0)

    @property
    def format(self) -> int:
        return int(self._meta("format") or 0)

    @property
    def model(self) -> str:
        return self._meta("model") or ""

    @property
    def embed_backend(self) -> str:
        """The backend of the last writer (onnx or torch: the same vectors either way)."""
        return self._meta("embed_backend") or ""

    def set_model(self, model: str, backend: str) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [("model", model), ("embed_backend", backend)],
            )

    @property
    def staging(self) -> bool:
        """Whether a writer may have left rows of an unpublished generation behind."""
        return self._meta("staging") != "0"  # unknown (an older version's index): maybe

    def set_staging(self, staging: bool) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('staging', ?)", (str(int(staging)),))

    def docs(self, kb: str | None = None) -> dict[str, DocEntry]:
        sql, args = "SELECT * FROM docs", ()
        if kb is not None:
            sql, args = sql + " WHERE kb = ?", (kb,)
        return {
            row[0]: DocEntry(*row) for row in self._db().execute(sql + " ORDER BY doc_id", args)
        }

    def get(self, doc_id: str) -> DocEntry | None:
        row = self._db().execute("SELECT * FROM docs WHERE doc_id = ?", (doc_id,)).fetchone()
        return DocEntry(*row) if row else None

    def totals(self) -> tuple[int, int]:
        """(documents, chunks)."""
        docs, chunks = (
            self._db().execute("SELECT COUNT(*), COALESCE(SUM(chunks), 0) FROM docs").fetchone()
        )
        return int(docs), int(chunks)

    def kbs(self) -> list[tuple[str, int, int]]:
        """(name, documents, chunks) of every knowledge base that holds a document."""
        rows = self._db().execute(
            "SELECT kb, COUNT(*), SUM(chunks) FROM docs GROUP BY kb ORDER BY kb"
        )
        return [(kb, int(n), int(c or 0)) for kb, n, c in rows]

    def publish(self, gen: int, put: Iterable[DocEntry], drop: Iterable[str]) -> None:
        """Make generation `gen` current: its documents in, the dropped ones out, at once."""
        columns = ", ".join(f.name for f in fields(DocEntry))
        marks = ", ".join("?" for _ in fields(DocEntry))
        with self._tx() as db:
            current = int(db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])
            if gen != current + 1:
                raise RuntimeError(f"generation {gen} cannot follow {current}: another writer?")
            db.executemany("DELETE FROM docs WHERE doc_id = ?", [(d,) for d in drop])
            db.executemany(
                f"INSERT OR REPLACE INTO docs ({columns}) VALUES ({marks})",
                [astuple(e) for e in put],
            )
            db.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(gen),))

    def recover(self) -> None:
        """Nothing to undo: a writer's SQLite transaction committed or did not."""

    def relocate(self, doc_id: str, origin: str, original: str) -> None:
        """The document's folder was moved or renamed: same chunks, new place."""
        with self._tx() as db:
            db.execute(
                "UPDATE docs SET origin = ?, original = ? WHERE doc_id = ?",
                (origin, original, doc_id),
            )

    def clear(self) -> None:
        """Forget every document (for --rebuild); the generation keeps counting."""
        with self._tx() as db:
            db.execute("DELETE FROM docs")
            db.execute(
                "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'"
            )


def edited(entry: DocEntry, changes: dict[str, str], gen: int) -> DocEntry:
    """`entry` with hand-corrected metadata, written anew at generation `gen`."""
    changes = {k: v for k, v in changes.items() if k in EDITABLE}
    corrected = json.dumps({**entry.corrections(), **changes}, ensure_ascii=False, sort_keys=True)
    return replace(entry, **changes, corrected=corrected, gen=gen, updated=now())


class ChromaManifest:
    """The manifest kept in the Chroma server, beside the chunks (RAG_CHROMA_URL), so that
    every replica reads the same documents and generation and none keeps state of its own.

    Chroma has no transactions, so document rows are versioned as chunk rows are
    (`rag.store.visible`): a writer adds its documents' rows under the next generation and
    marks the rows they replace dead there, then the one `meta` record's generation is
    the commit point (one record's upsert is atomic). `recover` undoes a killed writer.
    The meta record also keeps the totals, so counting costs no scan."""

    def __init__(self, collection, max_batch: int = 2000):
        self.collection = collection
        self.step = max_batch
        self._kbs: tuple[int, list[tuple[str, int, int]]] | None = None
        if not self._record("meta"):
            self._put("meta", row="meta", generation=0, format=FORMAT, documents=0, chunks=0)

    def _record(self, rid: str) -> dict:
        metas = self.collection.get(ids=[rid], include=["metadatas"])["metadatas"]
        return dict(metas[0]) if metas else {}

    def _put(self, rid: str, **values) -> None:
        """Change one record (Chroma wants a vector for every record: one of length 1)."""
        merged = {**self._record(rid), **values}
        self.collection.upsert(ids=[rid], embeddings=[[0.0]], metadatas=[merged])

    def _meta(self) -> dict:
        return self._record("meta")

    def _put_meta(self, **values) -> None:
        self._put("meta", **values)

    def take_lease(self, owner: str, seconds: float) -> bool:
        """Claim (or renew) the writer's lease unless another writer holds a live one.
        Best effort: Chroma has no compare-and-swap, so the claim is read back after a
        pause and of two replicas claiming at once the last to write wins; the generation
        check in `publish` is what stops a second writer from publishing over the first."""
        lease = self._record("lease")
        if lease.get("owner") not in (None, owner) and lease.get("expires", 0) > time.time():
            return False
        self._put("lease", row="lease", owner=owner, expires=time.time() + seconds)
        time.sleep(0.2)
        return self._record("lease").get("owner") == owner

    def renew_lease(self, owner: str, seconds: float) -> bool:
        """Extend a lease `owner` holds (no pause: nobody else may claim a live one)."""
        if self._record("lease").get("owner") != owner:
            return False
        self._put("lease", expires=time.time() + seconds)
        return True

    def release_lease(self, owner: str) -> None:
        if self._record("lease").get("owner") == owner:
            self._put("lease", expires=0.0)

    @property
    def generation(self) -> int:
        return int(self._meta().get("generation", 0))

    @property
    def format(self) -> int:
        return int(self._meta().get("format", 0))

    @property
    def model(self) -> str:
        return str(self._meta().get("model", ""))

    @property
    def embed_backend(self) -> str:
        return str(self._meta().get("embed_backend", ""))

    def set_model(self, model: str, backend: str) -> None:
        self._put_meta(model=model, embed_backend=backend)

    @property
    def staging(self) -> bool:
        return bool(self._meta().get("staging", 1))

    def set_staging(self, staging: bool) -> None:
        self._put_meta(staging=int(staging))

    def _rows(self, where: dict) -> Iterator[tuple[str, dict]]:
        for page in pages(self.collection, where, ["metadatas"], self.step):
            yield from zip(page["ids"], page["metadatas"], strict=True)

    def _visible(self, gen: int, *clauses: dict) -> dict:
        return visible(gen, {"row": "doc"}, *clauses)

    def docs(self, kb: str | None = None, gen: int | None = None) -> dict[str, DocEntry]:
        """The documents of generation `gen` (the current one by default)."""
        gen = self.generation if gen is None else gen
        where = self._visible(gen, *([{"kb": kb}] if kb is not None else []))
        found = {m["doc_id"]: _entry(m) for _, m in self._rows(where)}
        return dict(sorted(found.items()))

    def changed_since(self, old: int, gen: int) -> tuple[list[str], set[str]]:
        """(documents written after generation `old`, every document id) at `gen`: what a
        replica that holds `old` needs to follow to `gen`."""
        changed = [m["doc_id"] for _, m in self._rows(self._visible(gen, {"gen": {"$gt": old}}))]
        present = {m["doc_id"] for _, m in self._rows(self._visible(gen))}
        return changed, present

    def get(self, doc_id: str) -> DocEntry | None:
        rows = list(self._rows(self._visible(self.generation, {"doc_id": doc_id})))
        return _entry(rows[0][1]) if rows else None

    def totals(self) -> tuple[int, int]:
        meta = self._meta()
        return int(meta.get("documents", 0)), int(meta.get("chunks", 0))

    def kbs(self) -> list[tuple[str, int, int]]:
        """(name, documents, chunks) per knowledge base, read once per generation."""
        gen = self.generation
        if self._kbs is None or self._kbs[0] != gen:
            counts: dict[str, list[int]] = {}
            for entry in self.docs(gen=gen).values():
                count = counts.setdefault(entry.kb, [0, 0])
                count[0] += 1
                count[1] += entry.chunks
            self._kbs = (gen, [(kb, n, c) for kb, (n, c) in sorted(counts.items())])
        return self._kbs[1]

    def recover(self) -> None:
        """Undo a writer killed before its commit point."""
        recover(self.collection, self.generation, self.step)

    def publish(self, gen: int, put: Iterable[DocEntry], drop: Iterable[str]) -> None:
        meta = self._meta()
        current = int(meta.get("generation", 0))
        if gen != current + 1:
            raise RuntimeError(f"generation {gen} cannot follow {current}: another writer?")
        put = list(put)
        leaving = sorted({*drop, *(e.doc_id for e in put)})
        old: list[tuple[str, DocEntry]] = []
        for i in range(0, len(leaving), self.step):
            clause = {"doc_id": {"$in": leaving[i : i + self.step]}}
            old.extend((rid, _entry(m)) for rid, m in self._rows(self._visible(current, clause)))
        for i in range(0, len(put), self.step):
            part = put[i : i + self.step]
            self.collection.upsert(
                ids=[f"{e.doc_id}@{e.gen}" for e in part],
                embeddings=[[0.0]] * len(part),
                metadatas=[{**asdict(e), "row": "doc", "dead": NEVER} for e in part],
            )
        for i in range(0, len(old), self.step):
            part = [rid for rid, _ in old[i : i + self.step]]
            self.collection.update(ids=part, metadatas=[{"dead": gen}] * len(part))
        documents = int(meta.get("documents", 0)) + len(put) - len(old)
        chunks = int(meta.get("chunks", 0)) + sum(e.chunks for e in put)
        chunks -= sum(e.chunks for _, e in old)
        self._put_meta(generation=gen, documents=documents, chunks=chunks)  # the commit point
        collect(self.collection, gen - 1, self.step)

    def relocate(self, doc_id: str, origin: str, original: str) -> None:
        rows = list(self._rows(self._visible(self.generation, {"doc_id": doc_id})))
        if rows:
            self.collection.update(
                ids=[rows[0][0]], metadatas=[{"origin": origin, "original": original}]
            )

    def clear(self) -> None:
        """Forget every document (for --rebuild): a generation with none."""
        gen = self.generation + 1
        rows = [rid for rid, _ in self._rows(self._visible(gen - 1))]
        for i in range(0, len(rows), self.step):
            part = rows[i : i + self.step]
            self.collection.update(ids=part, metadatas=[{"dead": gen}] * len(part))
        self._put_meta(generation=gen, documents=0, chunks=0)


def _entry(meta: dict) -> DocEntry:
    return DocEntry(**{f.name: meta.get(f.name, f.default) for f in fields(DocEntry)})
