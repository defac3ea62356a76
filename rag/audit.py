"""The audit log: who asked, uploaded, edited, deleted, issued or revoked what, and when,
and who was refused. Kept apart from the request log (which an operator rotates) in a
SQLite file in the data dir, readable by admins (GET /api/audit, `rag audit`). Never a
question's text, a document's content or a secret: who, what, where, when, and the
outcome.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rag.db import create, transaction

AUDIT_FILE = "audit.sqlite"  # in the data dir

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, user TEXT NOT NULL,
    via TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, kb TEXT NOT NULL,
    status INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_ts ON audit (ts);
"""


@dataclass(frozen=True)
class Event:
    user: str
    via: str  # none | header | key | embed | cli
    action: str  # e.g. "POST /api/ask", "DELETE /api/documents/{doc_id:path}", "key create"
    target: str = ""  # a document id, a key's name, a job id
    kb: str = ""
    status: int = 0  # the HTTP status; 0 for a command
    ts: float = 0.0

    def to_json(self) -> dict:
        return {
            **asdict(self),
            "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.ts)),
        }


class AuditLog:
    def __init__(self, path: Path):
        self.path = path
        create(path, _SCHEMA)

    def _db(self):
        return transaction(self.path)

    def record(self, event: Event) -> None:
        with self._db() as db:
            db.execute(
                "INSERT INTO audit (ts, user, via, action, target, kb, status)"
                " VALUES (?,?,?,?,?,?,?)",
                (
                    event.ts or time.time(),
                    event.user,
                    event.via,
                    event.action,
                    event.target,
                    event.kb,
                    event.status,
                ),
            )

    def read(self, limit: int = 100, user: str = "", action: str = "") -> list[Event]:
        """The latest `limit` events, newest first; `action` matches a part ("DELETE")."""
        where, args = [], []
        if user:
            where.append("user = ?")
            args.append(user)
        if action:
            where.append("instr(action, ?) > 0")
            args.append(action)
        sql = "SELECT ts, user, via, action, target, kb, status FROM audit"
        sql += (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC LIMIT ?"
        with self._db() as db:
            rows = db.execute(sql, [*args, limit]).fetchall()
        return [
            Event(user, via, act, target, kb, status, ts)
            for ts, user, via, act, target, kb, status in rows
        ]
