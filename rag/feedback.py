"""👍/👎 feedback on answers, kept in SQLite under the data dir."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from rag.db import create, transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    rating INTEGER NOT NULL,          -- 1 = 👍, -1 = 👎
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    refused INTEGER NOT NULL,
    citations TEXT NOT NULL,          -- JSON: the answer's citations
    session TEXT NOT NULL DEFAULT ''
);
"""


class FeedbackStore:
    """One connection per call (rag.db): safe from any thread of the web server."""

    def __init__(self, path: Path):
        self.path = path
        create(path, _SCHEMA)

    def _connect(self):
        return transaction(self.path)

    def add(self, rating: int, answer: dict, session: str = "") -> None:
        """Store a rating for an answer object as `rag ask --json` prints it."""
        if rating not in (1, -1):
            raise ValueError(f"rating must be 1 or -1, got {rating!r}")
        with self._connect() as db:
            db.execute(
                "INSERT INTO feedback (created, rating, question, answer, refused, citations,"
                " session) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    time.time(),
                    rating,
                    answer["question"],
                    answer["answer"],
                    int(answer["refused"]),
                    json.dumps(answer["citations"], ensure_ascii=False),
                    session,
                ),
            )

    def all(self) -> list[dict]:
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            rows = db.execute("SELECT * FROM feedback ORDER BY id").fetchall()
        return [{**dict(r), "citations": json.loads(r["citations"])} for r in rows]
