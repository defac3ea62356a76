"""API keys (rag.keys): stored hashed, shown once, revoked and expired at once; and the
`rag keys` commands as a user runs them."""

import json
import sqlite3
import time

import pytest

from rag.access import Grant, Role
from rag.keys import KeyStore, UnknownKey, parse_duration, parse_rate
from tests.conftest import run_rag


def test_a_key_is_stored_only_as_its_hash_and_verifies(tmp_path):
    store = KeyStore(tmp_path / "keys.sqlite")
    _, secret = store.create("portal", Role.READER, frozenset({"政策"}), ("http://portal.intra/",))
    assert secret.startswith("rag_") and len(secret) > 40
    assert secret.encode() not in (tmp_path / "keys.sqlite").read_bytes()
    found = store.verify(secret)
    assert found.name == "portal" and found.origins == ("http://portal.intra",)
    principal = found.principal()
    assert principal.grants == (Grant(Role.READER, frozenset({"政策"})),) and principal.via == "key"
    assert store.verify(secret[:-1] + "x") is None and store.verify("not-a-key") is None
    assert store.get("portal").last_used is not None


def test_a_revoked_or_expired_key_no_longer_verifies(tmp_path):
    store = KeyStore(tmp_path / "keys.sqlite")
    _, revoked = store.create("old", Role.ADMIN)
    store.revoke("old")
    assert store.verify(revoked) is None
    with pytest.raises(UnknownKey, match="already revoked"):
        store.revoke("old")
    with pytest.raises(UnknownKey, match="no key named"):
        store.revoke("nobody")
    _, expiring = store.create("short", Role.READER, expires_in=60)
    with sqlite3.connect(tmp_path / "keys.sqlite") as db:
        db.execute("UPDATE keys SET expires = ? WHERE name = 'short'", (time.time() - 1,))
    assert store.verify(expiring) is None
    with pytest.raises(ValueError, match="exists"):
        store.create("old", Role.READER)


@pytest.mark.parametrize(
    ("text", "rate"), [("60/min", "60/minute"), ("10/s", "10/second"), ("1000 / h", "1000/hour")]
)
def test_rates_are_written_the_way_people_write_them(text, rate):
    assert parse_rate(text) == rate


def test_bad_rates_and_durations_say_how_to_write_them():
    with pytest.raises(ValueError, match="60/min"):
        parse_rate("fast")
    with pytest.raises(ValueError, match="90d"):
        parse_duration("3 weeks")
    assert parse_duration("90d") == 90 * 86400


def test_rag_keys_create_list_revoke(tmp_path):
    env = {"RAG_DATA_DIR": str(tmp_path / "data")}
    created = run_rag(
        "keys", "create", "--name", "portal", "--role", "reader", "--kb", "政策",
        "--origin", "http://portal.intra", "--rate", "60/min", "--expires", "90d", "--json",
        env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    shown = json.loads(created.stdout)
    assert shown["name"] == "portal" and shown["role"] == "reader" and shown["kbs"] == ["政策"]
    assert shown["key"].startswith("rag_")
    listed = json.loads(run_rag("keys", "list", "--json", env=env).stdout)
    assert [k["name"] for k in listed] == ["portal"] and "key" not in listed[0]
    assert run_rag("keys", "revoke", "portal", env=env).returncode == 0
    again = run_rag("keys", "revoke", "portal", env=env)
    assert again.returncode == 2 and "already revoked" in again.stderr
    bad = run_rag("keys", "create", "--name", "x", "--role", "boss", env=env)
    assert bad.returncode == 2 and "unknown role" in bad.stderr and "Traceback" not in bad.stderr
