"""API keys for programs and portals: `rag keys create|list|revoke`, sent as
`Authorization: Bearer KEY`.

A key is shown once, when it is created; the store keeps only its SHA-256 (a key is 256
random bits, so a plain hash cannot be searched back). Each key carries a role, the
knowledge bases it may touch, the browser origins it may be used from, a rate and an
expiry. One SQLite file in the data dir: every replica sharing the data dir sees a revoke.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rag.access import Grant, Principal, Role
from rag.db import create, transaction

KEYS_FILE = "keys.sqlite"  # in the data dir
PREFIX = "rag_"  # recognisable in a leaked config file or a secret scanner
TOUCH_EVERY = 60.0  # seconds between writes of a key's last-used time

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    name TEXT PRIMARY KEY, digest TEXT UNIQUE NOT NULL, role TEXT NOT NULL,
    kbs TEXT NOT NULL, origins TEXT NOT NULL, rate TEXT NOT NULL,
    created REAL NOT NULL, expires REAL, last_used REAL, revoked REAL
);
"""
_UNITS = {"s": "second", "sec": "second", "m": "minute", "min": "minute", "h": "hour", "d": "day"}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$")
_DURATION = re.compile(r"^\s*(\d+)\s*(m|h|d)\s*$")


def parse_rate(text: str) -> str:
    """ "60/min" → "60/minute" (the form the rate limiter reads), or ValueError."""
    match = _RATE.match(text or "")
    if not match or int(match[1]) < 1:
        raise ValueError(f"rate {text!r}: write it like 60/min, 10/s, 1000/h or 5000/d")
    return f"{int(match[1])}/{_UNITS.get(match[2], match[2])}"


def parse_duration(text: str) -> float:
    """ "90d" / "12h" / "30m" → seconds, or ValueError."""
    match = _DURATION.match(text or "")
    if not match or int(match[1]) < 1:
        raise ValueError(f"duration {text!r}: write it like 90d, 12h or 30m")
    return int(match[1]) * {"m": 60, "h": 3600, "d": 86400}[match[2]]


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    name: str
    role: Role
    kbs: frozenset[str] | None  # None = every knowledge base
    origins: tuple[str, ...]  # browser origins it may be used from; () = any
    rate: str  # "60/minute"; "" = the server's default
    created: float
    expires: float | None
    last_used: float | None
    revoked: float | None

    def usable(self, now: float) -> bool:
        return self.revoked is None and (self.expires is None or now < self.expires)

    def principal(self) -> Principal:
        return Principal(
            f"key:{self.name}",
            (Grant(self.role, self.kbs),),
            via="key",
            key=self.name,
            origins=self.origins,
            rate=self.rate,
        )

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "role": self.role.name.lower(),
            "kbs": sorted(self.kbs) if self.kbs is not None else ["*"],
            "origins": list(self.origins),
            "rate": self.rate,
            "created": _iso(self.created),
            "expires": _iso(self.expires),
            "last_used": _iso(self.last_used),
            "revoked": _iso(self.revoked),
        }


def _iso(ts: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else None


class UnknownKey(LookupError):
    """No key of that name; the message is meant for the user."""


class KeyStore:
    def __init__(self, path: Path):
        self.path = path
        self._touched: dict[str, float] = {}
        self._lock = threading.Lock()
        create(path, _SCHEMA)

    def _db(self):
        return transaction(self.path)

    def create(
        self,
        name: str,
        role: Role,
        kbs: frozenset[str] | None = None,
        origins: tuple[str, ...] = (),
        rate: str = "",
        expires_in: float | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret (shown once). ValueError if the name is taken."""
        name = name.strip()
        if not re.fullmatch(r"[\w.@-]{1,64}", name):
            raise ValueError(f"key name {name!r}: 1–64 letters, digits, . _ - or @")
        secret = PREFIX + secrets.token_urlsafe(32)
        now = time.time()
        key = ApiKey(
            name,
            role,
            None if role is Role.ADMIN else kbs,
            tuple(o.rstrip("/") for o in origins),
            rate,
            now,
            now + expires_in if expires_in else None,
            None,
            None,
        )
        try:
            with self._db() as db:
                db.execute(
                    "INSERT INTO keys VALUES (?,?,?,?,?,?,?,?,NULL,NULL)",
                    (
                        key.name,
                        digest(secret),
                        key.role.name,
                        "\n".join(sorted(key.kbs)) if key.kbs is not None else "*",
                        "\n".join(key.origins),
                        key.rate,
                        key.created,
                        key.expires,
                    ),
                )
        except sqlite3.IntegrityError:
            raise ValueError(
                f"a key named {name!r} exists (a revoked key keeps its name); pick another"
            ) from None
        return key, secret

    def list(self) -> list[ApiKey]:
        with self._db() as db:
            rows = db.execute("SELECT * FROM keys ORDER BY created").fetchall()
        return [_key(row) for row in rows]

    def get(self, name: str) -> ApiKey | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM keys WHERE name = ?", (name,)).fetchone()
        return _key(row) if row else None

    def revoke(self, name: str) -> ApiKey:
        with self._db() as db:
            changed = db.execute(
                "UPDATE keys SET revoked = ? WHERE name = ? AND revoked IS NULL",
                (time.time(), name),
            ).rowcount
        key = self.get(name)
        if key is None:
            raise UnknownKey(f"no key named {name!r}")
        if not changed:
            raise UnknownKey(f"key {name!r} was already revoked")
        return key

    def verify(self, secret: str) -> ApiKey | None:
        """The usable key with this secret (None: unknown, expired or revoked); notes
        when it was last used (at most once a minute per key: no write per request)."""
        if not secret.startswith(PREFIX):
            return None
        with self._db() as db:
            row = db.execute("SELECT * FROM keys WHERE digest = ?", (digest(secret),)).fetchone()
        if row is None:
            return None
        key, now = _key(row), time.time()
        if not key.usable(now):
            return None
        with self._lock:
            due = now - self._touched.get(key.name, 0.0) >= TOUCH_EVERY
            if due:
                self._touched[key.name] = now
        if due:
            with self._db() as db:
                db.execute("UPDATE keys SET last_used = ? WHERE name = ?", (now, key.name))
        return key


def _key(row: tuple) -> ApiKey:
    name, _digest, role, kbs, origins, rate, created, expires, last_used, revoked = row
    return ApiKey(
        name,
        Role[role],
        None if kbs == "*" else frozenset(kbs.split("\n")),
        tuple(o for o in origins.split("\n") if o),
        rate,
        created,
        expires,
        last_used,
        revoked,
    )
