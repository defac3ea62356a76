"""Who may see what, over real HTTP against the real index: the sign-in layer
(rag.api.auth), grants enforced inside retrieval, API keys, embed tokens, CSRF and rate
limits. The index holds the shipped corpus in two knowledge bases: 政策 (the policies)
and 内部资料 (the news article, whose figure 3227万美元 must never reach a reader of 政策).

The portal's proxy is played by the test client: the server sees it at 127.0.0.1, which
is or is not in the trusted list. Each attack must end in a 401/403/429 with nothing
leaked."""

import time
from urllib.parse import quote

import pytest

from rag.access import Grants, Role
from rag.api import create_app
from rag.api.auth import AuthConfig, EmbedTokens, trusted_networks
from rag.audit import AuditLog
from rag.config import Settings
from rag.jobs import JobQueue
from rag.keys import KeyStore
from tests.conftest import free_port, run_rag, serving
from ui import check_exposure

PORTAL = "http://portal.test:8080"
LAIWU = "莱芜区上半年实际使用外资多少？"  # answered only by the 内部资料 article
SECRET = "3227万美元"
RENT = "在明川区写字楼租办公室，第一年租金补贴多少？"  # answered by 政策
GRANTS = """
[users."张三"]
role = "editor"
kbs = ["政策"]

[groups."招商科"]
role = "reader"
kbs = ["政策"]

[groups."信息中心"]
role = "admin"
"""


def as_user(name: str, groups: str = "") -> dict:
    """The proxy's headers: names as raw UTF-8 (nginx passes $remote_user as it is)."""
    return {"X-Remote-User": name.encode(), "X-Remote-Groups": groups.encode()}


READER = as_user("王五", "招商科")
EDITOR = as_user("张三")
ADMIN = as_user("李四", "信息中心, 其他")


class Server:
    def __init__(
        self, assistant, tmp_path, trusted="127.0.0.1", rate="120/minute", ttl=600, **auth_kw
    ):
        tmp_path.mkdir(parents=True, exist_ok=True)
        grants_file = tmp_path / "grants.toml"
        grants_file.write_text(GRANTS, "utf-8")
        self.keys = KeyStore(tmp_path / "keys.sqlite")
        auth = AuthConfig(
            mode="header",
            grants=Grants(grants_file),
            keys=self.keys,
            trusted=trusted,
            allowed_origins=[PORTAL],
            rate=rate,
            tokens=EmbedTokens(b"k" * 32, ttl),
            **auth_kw,
        )
        (tmp_path / "jobs").mkdir()
        jobs = JobQueue(assistant.retriever.index, tmp_path / "jobs", 300, 60)  # not started
        self.app = create_app(
            lambda: assistant,
            [PORTAL],
            jobs=jobs,
            data_dir=tmp_path,
            auth=auth,
            audit=AuditLog(tmp_path / "audit.sqlite"),
            health=lambda: {"documents": assistant.retriever.index.manifest.totals()[0]},
        )

    def key(self, name="app", role=Role.READER, kbs=None, **kw) -> dict:
        _, secret = self.keys.create(name, role, kbs, **kw)
        return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def server(two_kb_assistant, tmp_path):
    return Server(two_kb_assistant, tmp_path)


def cited_kbs(answer: dict) -> set[str]:
    return {c["kb"] for c in answer["citations"]}


def doc_ids(api, headers) -> dict[str, str]:
    return {d["doc_id"]: d["kb"] for d in api.get("/api/documents", headers=headers).json()}


# -- header mode ------------------------------------------------------------------------


def test_the_user_from_a_trusted_proxy_is_honoured_within_their_grant(server):
    with serving(server.app) as api:
        answer = api.post("/api/ask", json={"question": RENT}, headers=READER)
        assert answer.status_code == 200 and "50%" in answer.json()["answer"]
        assert cited_kbs(answer.json()) == {"政策"}
        # Scores rest on the whole index's word statistics: not for a reader of a part.
        assert {c["score"] for c in answer.json()["citations"]} == {None}
        completion = api.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": RENT}]},
            headers=READER,
        ).json()
        assert {c["score"] for c in completion["citations"]} == {None}
        admin = api.post("/api/ask", json={"question": RENT}, headers=ADMIN).json()
        assert all(isinstance(c["score"], float) for c in admin["citations"])
        assert api.post("/api/ask", json={"question": RENT}).status_code == 401
        probe = api.get("/healthz")  # probes skip the proxy, and learn nothing of the index
        assert probe.status_code == 200 and probe.json() == {"status": "ok", "ready": True}
        assert "documents" not in api.get("/healthz", headers=READER).json()
        assert api.get("/healthz", headers=ADMIN).json()["documents"] > 0
        assert api.get("/widget.js").status_code == 200  # a portal page loads it first


def test_a_reader_never_gets_a_passage_of_a_knowledge_base_not_granted(server):
    """Through every route that answers or searches: nothing of 内部资料 comes back."""
    with serving(server.app) as api:
        asked = api.post("/api/ask", json={"question": LAIWU}, headers=READER).json()
        assert SECRET not in str(asked) and cited_kbs(asked) <= {"政策"}
        chat = api.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": LAIWU}]},
            headers=READER,
        ).json()
        assert SECRET not in str(chat) and cited_kbs(chat) <= {"政策"}
        streamed = api.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": LAIWU}], "stream": True},
            headers=READER,
        ).text
        assert SECRET not in streamed
        history = [{"role": "user", "content": "内部资料里莱芜区的外资"}]
        followed = api.post(
            "/api/ask", json={"question": "多少？", "history": history}, headers=READER
        ).json()
        assert SECRET not in str(followed)
        hits = api.post("/api/search", json={"question": LAIWU}, headers=READER).json()["hits"]
        assert hits and {h["kb"] for h in hits} == {"政策"} and SECRET not in str(hits)
        assert {h["lexical"] for h in hits} == {None}  # index-wide statistics stay hidden
        # The same question from an admin finds it: the grant, not the question, hid it.
        admin = api.post("/api/ask", json={"question": LAIWU}, headers=ADMIN).json()
        assert SECRET in admin["answer"]


@pytest.mark.parametrize("kb", ["内部资料", "没有这个库"])
def test_a_reader_asking_for_another_knowledge_base_by_filter_is_forbidden(server, kb):
    with serving(server.app) as api:
        for path, body in [
            ("/api/ask", {"question": LAIWU, "kb": kb}),
            ("/api/search", {"question": LAIWU, "kb": [kb]}),
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": LAIWU}], "kb": kb}),
        ]:
            refused = api.post(path, json=body, headers=READER)
            assert refused.status_code == 403, path
            assert refused.json()["error"]["type"] == "permission_error"
            assert SECRET not in refused.text


def test_documents_of_another_knowledge_base_are_not_there_for_a_reader(server):
    """Listing, chunks by id, the original, editing and deleting: a 404 as if the id did
    not exist (ragflow #15267: a download route that served anyone's file by id)."""
    with serving(server.app) as api:
        everything = doc_ids(api, ADMIN)
        hidden = next(d for d, kb in everything.items() if kb == "内部资料")
        assert set(doc_ids(api, READER).values()) == {"政策"}
        assert [k["name"] for k in api.get("/api/kbs", headers=READER).json()] == ["政策"]
        assert api.get(f"/api/documents/{hidden}/chunks", headers=READER).status_code == 404
        assert api.get(f"/api/documents/{hidden}/original", headers=READER).status_code == 404
        assert api.delete(f"/api/documents/{hidden}", headers=READER).status_code == 404
        assert api.get("/api/documents?kb=内部资料", headers=READER).status_code == 403
        chunks = api.get(f"/api/documents/{hidden}/chunks", headers=ADMIN)
        assert chunks.status_code == 200 and SECRET in chunks.text


def test_a_reader_may_not_manage_documents_and_an_editor_only_their_own(server):
    with serving(server.app) as api:
        everything = doc_ids(api, ADMIN)
        policy = next(d for d, kb in everything.items() if kb == "政策")
        hidden = next(d for d, kb in everything.items() if kb == "内部资料")
        assert api.delete(f"/api/documents/{policy}", headers=READER).status_code == 403
        assert api.get("/api/jobs", headers=READER).status_code == 403
        assert api.get("/admin", headers=READER).status_code == 403
        upload = {"files": ("a.txt", "新的政策全文。".encode())}
        refused = api.post("/api/documents", files=upload, data={"kb": "内部资料"}, headers=EDITOR)
        assert refused.status_code == 403
        assert api.delete(f"/api/documents/{hidden}", headers=EDITOR).status_code == 404
        deleting = api.delete(f"/api/documents/{policy}", headers=EDITOR)
        assert deleting.status_code == 202  # queued (the worker is not running here)
        assert [j["doc_id"] for j in api.get("/api/jobs", headers=EDITOR).json()] == [policy]


def test_metrics_are_for_admins(server):
    with serving(server.app) as api:
        assert api.get("/metrics", headers=READER).status_code == 403
        assert api.get("/metrics", headers=ADMIN).status_code == 200


def test_a_user_without_any_grant_is_signed_in_but_may_not_ask(server):
    with serving(server.app) as api:
        refused = api.post("/api/ask", json={"question": RENT}, headers=as_user("陌生人"))
        assert refused.status_code == 403 and "no access" in refused.json()["error"]["message"]


def test_a_forged_user_header_from_an_untrusted_address_is_ignored(two_kb_assistant, tmp_path):
    server = Server(two_kb_assistant, tmp_path, trusted="10.0.0.1")
    with serving(server.app) as api:
        forged = api.post("/api/ask", json={"question": LAIWU}, headers=ADMIN)
        assert forged.status_code == 401 and SECRET not in forged.text
        assert forged.json()["error"]["type"] == "authentication_error"


def test_with_a_proxy_secret_only_requests_carrying_it_are_believed(two_kb_assistant, tmp_path):
    """A local process can reach the port as the proxy does; it cannot know the secret."""
    server = Server(two_kb_assistant, tmp_path, proxy_secret="s3cret-from-the-proxy")
    with serving(server.app) as api:
        for headers in (ADMIN, {**ADMIN, "X-Rag-Proxy-Secret": "guess"}):
            forged = api.get("/api/audit", headers=headers)
            assert forged.status_code == 401 and SECRET not in forged.text
        proxied = api.get(
            "/api/audit", headers={**ADMIN, "X-Rag-Proxy-Secret": "s3cret-from-the-proxy"}
        )
        assert proxied.status_code == 200


def test_header_mode_does_not_start_without_saying_whom_to_trust(tmp_path):
    """The default trusted address (127.0.0.1) would believe any local process."""
    from ui import auth_config

    audit = AuditLog(tmp_path / "audit.sqlite")
    with pytest.raises(ValueError, match="RAG_AUTH_PROXY_SECRET"):
        auth_config(Settings(auth="header", data_dir=tmp_path), audit, "127.0.0.1")
    for trust in ({"forwarded_allow_ips": "127.0.0.2"}, {"auth_proxy_secret": "s"}):
        assert auth_config(Settings(auth="header", data_dir=tmp_path, **trust), audit, "127.0.0.1")


def test_rag_serve_in_header_mode_without_trust_exits_with_the_reason(tmp_path):
    result = run_rag("serve", "--port", str(free_port()), env={"RAG_AUTH": "header"}, timeout=120)
    assert result.returncode != 0
    assert "RAG_AUTH_PROXY_SECRET" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("path", ["/", "/admin", "/api/documents", "/api/kbs", "/metrics"])
def test_every_page_and_route_needs_a_user_or_a_key(server, path):
    with serving(server.app) as api:
        assert api.get(path).status_code == 401


def test_names_are_raw_utf8_unless_the_proxy_is_said_to_encode_them(two_kb_assistant, tmp_path):
    """Decoding comes after splitting the groups: an encoded comma adds no group."""
    smuggled = {"X-Remote-User": b"wangwu", "X-Remote-Groups": "foo%2C信息中心".encode()}
    with serving(Server(two_kb_assistant, tmp_path).app) as api:
        assert api.get("/api/audit", headers=smuggled).status_code == 403
    encoded = Server(two_kb_assistant, tmp_path / "encoded", percent_encoded=True)
    with serving(encoded.app) as api:
        assert api.get("/api/audit", headers=smuggled).status_code == 403
        admin = {"X-Remote-User": quote("李四"), "X-Remote-Groups": quote("信息中心")}
        assert api.get("/api/audit", headers=admin).status_code == 200


def test_an_open_path_is_open_only_as_itself(server):
    with serving(server.app) as api:
        for path in ("/api/documents/x/healthz", "/api/documents/a/widget.js/chunks"):
            refused = api.get(path)
            assert refused.status_code == 401 and "portal" in refused.json()["error"]["message"]


def test_trusted_addresses_accept_networks_and_any():
    assert trusted_networks("*") is None
    assert len(trusted_networks("127.0.0.1, 10.0.0.0/8")) == 2


def test_header_mode_may_listen_beyond_loopback():
    check_exposure("0.0.0.0", insecure_no_auth=False, auth="header")


# -- CSRF -------------------------------------------------------------------------------


def test_a_cross_site_delete_in_a_signed_in_users_name_is_refused(server):
    """The proxy's cookie comes with any request the browser sends, a hostile page's too."""
    with serving(server.app) as api:
        policy = next(d for d, kb in doc_ids(api, ADMIN).items() if kb == "政策")
        evil = api.delete(
            f"/api/documents/{policy}", headers={**EDITOR, "Origin": "http://evil.example"}
        )
        assert evil.status_code == 403 and "cross-site" in evil.json()["error"]["message"]
        assert api.get("/api/jobs", headers=EDITOR).json() == []  # nothing was queued
        own = api.delete(
            f"/api/documents/{policy}", headers={**EDITOR, "Origin": str(api.base_url)}
        )
        assert own.status_code == 202


def test_a_cross_site_post_with_only_a_referer_is_refused(server):
    with serving(server.app) as api:
        evil = api.post(
            "/api/reindex", json={}, headers={**EDITOR, "Referer": "http://evil.example/page"}
        )
        assert evil.status_code == 403 and "cross-site" in evil.json()["error"]["message"]


# -- API keys ---------------------------------------------------------------------------


def test_keys_sign_programs_in_within_their_role_and_knowledge_bases(server):
    with serving(server.app) as api:
        reader = server.key("reader", kbs=frozenset({"政策"}))
        asked = api.post("/api/ask", json={"question": LAIWU}, headers=reader).json()
        assert SECRET not in str(asked) and cited_kbs(asked) <= {"政策"}
        policy = next(d for d, kb in doc_ids(api, ADMIN).items() if kb == "政策")
        assert api.delete(f"/api/documents/{policy}", headers=reader).status_code == 403
        admin = server.key("ops", Role.ADMIN)
        assert SECRET in api.post("/api/ask", json={"question": LAIWU}, headers=admin).text


def test_a_wrong_expired_or_revoked_key_is_refused(server):
    with serving(server.app) as api:
        wrong = {"Authorization": "Bearer rag_" + "x" * 43}
        assert api.post("/api/ask", json={"question": RENT}, headers=wrong).status_code == 401
        revoked = server.key("gone")
        server.keys.revoke("gone")
        assert api.post("/api/ask", json={"question": RENT}, headers=revoked).status_code == 401
        expiring = server.key("brief", expires_in=1)
        assert api.post("/api/ask", json={"question": RENT}, headers=expiring).status_code == 200
        time.sleep(1.1)
        expired = api.post("/api/ask", json={"question": RENT}, headers=expiring)
        assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]
        basic = api.post("/api/ask", json={"question": RENT}, headers={"Authorization": "Basic x"})
        assert basic.status_code == 401


def test_a_key_used_from_a_browser_on_another_origin_is_refused(server):
    with serving(server.app) as api:
        key = server.key("portal", origins=(PORTAL,))
        ok = api.post("/api/ask", json={"question": RENT}, headers={**key, "Origin": PORTAL})
        assert ok.status_code == 200
        evil = {**key, "Origin": "http://evil.example"}
        assert api.post("/api/ask", json={"question": RENT}, headers=evil).status_code == 403


def test_200_requests_a_minute_from_one_key_meet_its_rate(server):
    """The key allows 60 a minute: the first 60 are answered (empty questions: a quick
    400), the other 140 get a 429 that says when to come back."""
    with serving(server.app) as api:
        key = server.key("busy", rate="60/minute")
        statuses = [
            api.post("/api/ask", json={"question": ""}, headers=key).status_code for _ in range(200)
        ]
        assert statuses.count(400) == 60 and statuses.count(429) == 140
        limited = api.post("/api/ask", json={"question": RENT}, headers=key)
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert limited.json()["error"]["type"] == "rate_limit_error"
        other = server.key("quiet")  # another key has its own count
        assert api.post("/api/ask", json={"question": RENT}, headers=other).status_code == 200


# -- embed tokens -----------------------------------------------------------------------


def embed_token(api, key: dict, user="王五", groups=("招商科",), origin=PORTAL):
    return api.post(
        "/api/embed-tokens",
        json={"user": user, "groups": list(groups), "origin": origin},
        headers=key,
    )


def test_an_embed_token_answers_its_user_from_its_portal_only(server):
    with serving(server.app) as api:
        portal = server.key("portal", origins=(PORTAL,))
        issued = embed_token(api, portal)
        assert issued.status_code == 200 and issued.json()["expires_in"] == 600
        token = {"Authorization": f"Bearer {issued.json()['token']}"}
        answer = api.post("/api/ask", json={"question": RENT}, headers={**token, "Origin": PORTAL})
        assert answer.status_code == 200 and "50%" in answer.json()["answer"]
        hidden = api.post(
            "/api/ask", json={"question": LAIWU}, headers={**token, "Origin": PORTAL}
        ).json()  # the token's user reads 政策 only, as the grants say
        assert SECRET not in str(hidden)
        for origin in ({"Origin": "http://evil.example"}, {}):  # replayed elsewhere
            replay = api.post("/api/ask", json={"question": RENT}, headers={**token, **origin})
            assert replay.status_code == 403
        assert embed_token(api, portal, origin="http://evil.example").status_code == 403
        assert embed_token(api, server.key("no-origins")).status_code == 403
        assert embed_token(api, token).status_code == 403  # a token cannot mint tokens
        assert embed_token(api, READER).status_code == 403  # nor can a user


def test_an_embed_token_is_refused_after_it_expires_or_its_key_is_revoked(
    two_kb_assistant, tmp_path
):
    server = Server(two_kb_assistant, tmp_path, ttl=1)
    with serving(server.app) as api:
        portal = server.key("portal", origins=(PORTAL,))
        token = {"Authorization": f"Bearer {embed_token(api, portal).json()['token']}"}
        headers = {**token, "Origin": PORTAL}
        assert api.post("/api/ask", json={"question": RENT}, headers=headers).status_code == 200
        server.keys.revoke("portal")
        revoked = api.post("/api/ask", json={"question": RENT}, headers=headers)
        assert revoked.status_code == 401 and "revoked" in revoked.json()["error"]["message"]
        time.sleep(2.1)
        expired = api.post("/api/ask", json={"question": RENT}, headers=headers)
        assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]


# -- the audit log ----------------------------------------------------------------------


def test_the_audit_log_says_who_asked_changed_and_was_refused_and_only_admins_read_it(server):
    with serving(server.app) as api:
        policy = next(d for d, kb in doc_ids(api, ADMIN).items() if kb == "政策")
        api.post("/api/ask", json={"question": RENT}, headers=READER)
        api.post("/api/ask", json={"question": LAIWU, "kb": "内部资料"}, headers=READER)
        api.delete(f"/api/documents/{policy}", headers=EDITOR)
        portal = server.key("portal", origins=(PORTAL,))
        embed_token(api, portal, user="赵六")
        assert api.get("/api/audit", headers=READER).status_code == 403
        events = api.get("/api/audit", headers=ADMIN).json()
        seen = [(e["user"], e["action"], e["target"], e["kb"], e["status"]) for e in events]
        assert seen == [
            ("王五", "GET /api/audit", "", "", 403),
            ("key:portal", "POST /api/embed-tokens", "赵六", "", 200),
            ("张三", "DELETE /api/documents/{doc_id:path}", policy, "政策", 202),
            ("王五", "POST /api/ask", "", "", 403),
            ("王五", "POST /api/ask", "", "政策", 200),
        ]
        assert RENT not in str(events) and "rag_" not in str(events)  # no text, no secret
        deletes = api.get("/api/audit?action=DELETE", headers=ADMIN).json()
        assert [e["user"] for e in deletes] == ["张三"]


# -- uploads and secrets ----------------------------------------------------------------


def test_a_zip_with_dotdot_paths_writes_nothing_outside_the_originals(server, tmp_path):
    import io
    import zipfile

    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as archive:
        archive.writestr("../../escaped.txt", "第一条 越权写入。")
        archive.writestr("/etc/escaped.txt", "第一条 越权写入。")
    with serving(server.app) as api:
        refused = api.post(
            "/api/documents",
            files={"files": ("policies.zip", packed.getvalue())},
            data={"kb": "政策"},
            headers=EDITOR,
        )
        assert refused.status_code == 400 and "escaped.txt" in refused.json()["error"]["message"]
    assert not list(tmp_path.parent.rglob("escaped.txt"))


def test_keys_and_tokens_never_reach_the_logs(server, caplog):
    caplog.set_level("DEBUG")
    with serving(server.app) as api:
        key = server.key("portal", origins=(PORTAL,))
        token = embed_token(api, key).json()["token"]
        api.post("/api/ask", json={"question": RENT}, headers={**key, "Origin": PORTAL})
        api.post(
            "/api/ask",
            json={"question": RENT},
            headers={"Authorization": f"Bearer {token}", "Origin": PORTAL},
        )
        api.post("/api/ask", json={"question": RENT}, headers={"Authorization": "Bearer rag_x"})
    secret = key["Authorization"].removeprefix("Bearer ")
    assert "rag.request" in caplog.text and "user=key:portal" in caplog.text
    assert secret not in caplog.text and token not in caplog.text and "rag_x" not in caplog.text
