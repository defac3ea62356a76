"""Who may do what: roles, knowledge-base grants and the signed-in principal.

A grant gives a role on some knowledge bases (or all). A reader may ask within the
knowledge bases granted; an editor may also manage their documents; an admin may do
everything. Grants come from a TOML file an admin keeps (re-read when it changes):

    [users."张三"]
    role = "editor"
    kbs = ["飞地经济"]

    [groups."招商科"]
    role = "reader"
    kbs = ["飞地经济", "default"]   # "*" or no kbs = every knowledge base

    [groups."信息中心"]
    role = "admin"

    [users."*"]                    # everyone who signs in
    role = "reader"
    kbs = ["公开政策"]

A user with no grant may do nothing: material not every reader may see (内部资料) must
not leak through a forgotten entry.
"""

from __future__ import annotations

import logging
import threading
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

log = logging.getLogger("rag.access")


class Role(IntEnum):
    READER = 1
    EDITOR = 2
    ADMIN = 3

    @classmethod
    def named(cls, name: str) -> Role:
        try:
            return cls[name.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown role {name!r}: reader, editor or admin") from None


class Forbidden(PermissionError):
    """Signed in, but not allowed this; the message is meant for the caller (403)."""


@dataclass(frozen=True)
class Grant:
    role: Role
    kbs: frozenset[str] | None = None  # None = every knowledge base

    def covers(self, kb: str) -> bool:
        return self.kbs is None or kb in self.kbs


def _union(grants: list[Grant]) -> frozenset[str] | None:
    if any(g.kbs is None for g in grants):
        return None
    return frozenset().union(*(g.kbs for g in grants if g.kbs is not None))


@dataclass(frozen=True)
class Principal:
    """The caller of one request: who, how they signed in, and what they may touch."""

    name: str
    grants: tuple[Grant, ...] = ()
    groups: tuple[str, ...] = ()
    via: str = "none"  # none | header | key | embed
    key: str = ""  # the API key's name, when a key (or a token it issued) signed in
    origins: tuple[str, ...] = ()  # browser origins it may be used from (a key's); () = any
    rate: str = ""  # its own rate limit ("60/minute"); "" = the server's

    def readable(self) -> frozenset[str] | None:
        """The knowledge bases this caller may read (None = all)."""
        return _union(list(self.grants))

    def editable(self) -> frozenset[str] | None:
        """The knowledge bases whose documents this caller may manage (None = all)."""
        return _union([g for g in self.grants if g.role >= Role.EDITOR])

    @property
    def is_admin(self) -> bool:
        return any(g.role is Role.ADMIN for g in self.grants)

    def may_read(self, kb: str) -> bool:
        return any(g.covers(kb) for g in self.grants)

    def may_edit(self, kb: str) -> bool:
        return any(g.role >= Role.EDITOR and g.covers(kb) for g in self.grants)

    def check_read(self, kbs: frozenset[str] = frozenset()) -> None:
        """Forbidden unless this caller may ask at all and read each of `kbs`; a knowledge
        base not granted is refused the same way whether it exists or not."""
        if not self.grants:
            raise Forbidden(f"{self.name} has no access to any knowledge base")
        denied = sorted(kb for kb in kbs if not self.may_read(kb))
        if denied:
            raise Forbidden(f"no access to knowledge base {denied[0]!r}")

    def check_edit(self, kb: str) -> None:
        if not self.may_edit(kb):
            raise Forbidden(f"{self.name} may not manage the documents of {kb!r}")

    def check_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("only an admin may do this")


def within(grants: tuple[Grant, ...], ceiling: Grant) -> tuple[Grant, ...]:
    """`grants` cut down to what `ceiling` allows (its role, its knowledge bases): what a
    user may do through a key that may do less than the user."""
    cut = []
    for grant in grants:
        if grant.kbs is None:
            kbs = ceiling.kbs
        else:
            kbs = grant.kbs if ceiling.kbs is None else grant.kbs & ceiling.kbs
        if kbs is None or kbs:
            cut.append(Grant(min(grant.role, ceiling.role), kbs))
    return tuple(cut)


# No sign-in (RAG_AUTH=none, loopback only): the one person at this machine runs it.
LOCAL = Principal("local", (Grant(Role.ADMIN),))


def as_seen_by(principal: Principal, answer: dict) -> dict:
    """`answer` (the `rag ask --json` object) as `principal` may see it: a caller who may
    not read every knowledge base gets no citation scores. BM25's term statistics are the
    whole index's, so a score would tell how often a word occurs where they may not read."""
    if principal.readable() is None:
        return answer
    return {**answer, "citations": [{**c, "score": None} for c in answer["citations"]]}


def parse_grant(entry: dict, where: str) -> Grant:
    """One `[users.X]` / `[groups.X]` table as a `Grant`, or ValueError naming `where`."""
    unknown = set(entry) - {"role", "kbs"}
    if unknown:
        raise ValueError(f"{where}: unknown key {sorted(unknown)[0]!r} (role, kbs)")
    try:
        role = Role.named(str(entry.get("role", "")))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    kbs = entry.get("kbs", "*")
    if isinstance(kbs, str):
        kbs = [kbs]
    if not isinstance(kbs, list) or not all(isinstance(k, str) and k.strip() for k in kbs):
        raise ValueError(f'{where}: kbs is a list of knowledge base names, or "*"')
    names = frozenset(k.strip() for k in kbs)
    return Grant(role, None if "*" in names or role is Role.ADMIN else names)


def parse_grants(text: str, where: str = "grants") -> dict[str, dict[str, Grant]]:
    """The grants file's text as {"users": {name: Grant}, "groups": {name: Grant}}."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{where}: not valid TOML ({exc})") from None
    unknown = set(data) - {"users", "groups"}
    if unknown:
        raise ValueError(f"{where}: unknown table [{sorted(unknown)[0]}] (users, groups)")
    return {
        kind: {
            name: parse_grant(entry, f"{where}: [{kind}.{name}]")
            for name, entry in data.get(kind, {}).items()
        }
        for kind in ("users", "groups")
    }


class Grants:
    """The grants file, re-read when it changes: an admin edits it while the server runs.
    A file that became invalid keeps the last valid grants and is logged; a missing file
    grants nothing."""

    def __init__(self, path: Path, on_change: Callable[[str], None] | None = None):
        """`on_change(summary)` hears of each change the server picks up (the audit log)."""
        self.path = path
        self.on_change = on_change
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._grants: dict[str, dict[str, Grant]] = {"users": {}, "groups": {}}
        self._load(strict=True)

    def _load(self, strict: bool = False) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            if self._stamp is not None and self.on_change:
                self.on_change("file removed: nobody is granted anything")
            self._stamp, self._grants = None, {"users": {}, "groups": {}}
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        try:
            grants = parse_grants(self.path.read_text("utf-8"), str(self.path))
        except (ValueError, UnicodeDecodeError) as exc:
            if strict:
                raise ValueError(str(exc)) from None
            log.error("grants file not reloaded, the previous grants stay: %s", exc)
            self._stamp = stamp  # said once, not on every request
            return
        self._stamp, self._grants = stamp, grants
        summary = f"{len(grants['users'])} users, {len(grants['groups'])} groups"
        log.info("grants loaded: %s", summary)
        if self.on_change and not strict:
            self.on_change(summary)

    def of(self, user: str, groups: tuple[str, ...] = ()) -> tuple[Grant, ...]:
        """What `user` (a member of `groups`) is granted, in the file as it is now."""
        with self._lock:
            self._load()
            grants = self._grants
        found = [grants["users"][u] for u in (user, "*") if u in grants["users"]]
        found += [grants["groups"][g] for g in groups if g in grants["groups"]]
        return tuple(found)
