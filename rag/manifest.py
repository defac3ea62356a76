"""The manifest: which documents the index holds, in which knowledge base, and the
generation that published them (SQLite, one row per document).

The generation is the index's commit point: a writer stages its rows in the vector store
and its lexical index in a folder of the next generation, then publishes everything with
one transaction here. A reader asks for the generation (a cheap query) on each request.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path

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
    updated TEXT NOT NULL DEFAULT ''
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
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._db().executescript(_SCHEMA)  # runs its own transaction
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (str(FORMAT),))

    def _db(self) -> sqlite3.Connection:
        """One connection per thread: sqlite3 connections must not be shared."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

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
    return replace(
        entry, **{k: v for k, v in changes.items() if k in EDITABLE}, gen=gen, updated=now()
    )
