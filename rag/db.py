"""SQLite files in the data dir. Small ones (keys, audit log, feedback): one short-lived
connection per call, so any thread of the web server may use them. Those read on every
question (the manifest, the sentence vectors): a connection per thread (`PerThread`)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def transaction(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection to `path` whose work commits on success, rolls back on an error, and
    is closed either way (sqlite3's own `with` commits but leaves the connection open)."""
    db = sqlite3.connect(path, timeout=10)
    try:
        with db:
            yield db
    finally:
        db.close()


def create(path: Path, schema: str) -> None:
    """The file and its tables, if they are not there yet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with transaction(path) as db:
        db.execute("PRAGMA journal_mode=WAL")  # readers never wait for the one writer
        db.executescript(schema)


class PerThread:
    """Connections to one file, one per thread (sqlite3 connections must not be shared),
    kept open, in autocommit mode with WAL so that readers never wait for the writer."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._local = threading.local()

    def __call__(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection in a write transaction, rolled back on an error."""
        db = self()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
