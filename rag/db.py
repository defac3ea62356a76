"""Small SQLite files in the data dir (keys, audit log, feedback): one short-lived
connection per call, so any thread of the web server may use them."""

from __future__ import annotations

import sqlite3
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
