"""The HTTP API over real HTTP: a uvicorn server on a free port, httpx as the client."""

import re
from pathlib import Path

import pytest

from rag.api import create_app
from rag.load import FILE_SUFFIXES, RECORD_SUFFIXES
from tests.conftest import serving, sse_events, streamed_text

PORTAL = "http://portal.example:8080"
FOLLOW_UP = [
    {"role": "user", "content": "莱芜区上半年实际使用外资多少？"},
    {"role": "assistant", "content": "上半年,全区实际使用外资3227万美元[1]"},
]


@pytest.fixture(scope="module")
def api(assistant):
    app = create_app(lambda: assistant, [PORTAL], health=lambda: {"chunks": 1})
    with serving(app) as client:
        yield client


def test_ask_returns_the_rag_ask_json_object(api):
    r = api.post("/api/ask", json={"question": "莱芜区上半年实际使用外资多少？"})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {
        "question",
        "answer",
        "refused",
        "citations",
        "timings_ms",
        "standalone_question",
        "unverified",
        "notice",
        "out_of_scope",
        "generation",
        "related",
        "span",
        "confidence",
    }
    assert "3227万美元" in body["answer"] and body["citations"][0]["doc_id"].startswith("news/")
    assert body["standalone_question"] == body["question"] and body["unverified"] == []


def test_ask_keeps_the_subject_of_a_follow_up(api):
    r = api.post("/api/ask", json={"question": "那欧美资金呢？", "history": FOLLOW_UP})
    assert r.status_code == 200
    body = r.json()
    assert body["question"] == "那欧美资金呢？"
    assert body["standalone_question"] == "莱芜区上半年实际使用外资多少？那欧美资金呢？"
    assert "3008万美元" in body["answer"]


def test_ask_applies_filters_and_k(api):
    r = api.post(
        "/api/ask",
        json={
            "question": "实际使用外资多少",
            "k": 2,
            "filters": {
                "since": "2024-01-01",
                "source": "青禾市明川区投资促进局、商务局、财政局（虚构）",
            },
        },
    )
    assert r.status_code == 200
    assert {c["doc_id"] for c in r.json()["citations"]} <= {"policies/foreign-investment-awards.md"}


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({}, 422, "question"),
        ({"question": "   "}, 400, "empty"),
        ({"question": "外" * 600}, 400, "limit is 500"),
        ({"question": "外" * 30000}, 422, "question"),
        ({"question": 42}, 422, "question"),
        ({"question": "外资", "k": 0}, 422, "k"),
        ({"question": "外资", "filters": {"since": "2024-13-01"}}, 422, "filters.since"),
        (
            {"question": "外资", "filters": {"since": "2025-01-01", "until": "2024-01-01"}},
            400,
            "after",
        ),
        ({"question": "外资", "filters": {"colour": "red"}}, 422, "filters.colour"),
        ({"question": "外资", "history": "not a list"}, 422, "history"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_json_error(api, body, status, says):
    r = api.post("/api/ask", json=body)
    assert r.status_code == status
    assert says in r.json()["error"]["message"]


def test_a_body_that_is_not_json_is_a_4xx(api):
    r = api.post("/api/ask", content=b"{oops", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["message"] == "the body is not valid JSON"


def test_chat_completions_answers_with_citations_in_text_and_field(api):
    r = api.post(
        "/v1/chat/completions",
        json={
            "model": "policy-rag",
            "temperature": 0.2,
            "messages": [
                {"role": "system", "content": "你是助手"},
                {"role": "user", "content": "莱芜区上半年实际使用外资多少？"},
            ],
        },
    )
    assert r.status_code == 200
    body = r.json()
    content = body["choices"][0]["message"]["content"]
    assert body["object"] == "chat.completion" and body["choices"][0]["finish_reason"] == "stop"
    assert "3227万美元" in content and "[1]" in content and "来源：" in content
    assert body["citations"][0]["n"] == 1


def test_chat_completions_streams_server_sent_events(api):
    request = {
        "stream": True,
        "messages": [{"role": "user", "content": "莱芜区上半年实际使用外资多少？"}],
    }
    chunks = sse_events(api, request)
    assert "3227万美元" in streamed_text(chunks) and len(chunks) > 3
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["citations"]


def test_chat_completions_reads_earlier_messages_as_history(api):
    messages = [*FOLLOW_UP, {"role": "user", "content": "那欧美资金呢？"}]
    r = api.post("/v1/chat/completions", json={"messages": messages})
    assert "3008万美元" in r.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize(
    "messages",
    [
        [],
        [{"role": "assistant", "content": "你好"}],
        [{"role": "user", "content": ""}],
        [{"role": "wizard", "content": "外资"}],
    ],
)
def test_chat_completions_rejects_bad_conversations(api, messages):
    r = api.post("/v1/chat/completions", json={"messages": messages})
    assert 400 <= r.status_code < 500 and r.json()["error"]["message"]


def test_healthz_widget_and_headers(api):
    assert api.get("/healthz").json() == {"status": "ok", "ready": True, "chunks": 1}
    widget = api.get("/widget.js")
    assert widget.status_code == 200 and "javascript" in widget.headers["content-type"]
    assert "api/ask" in widget.text and "textContent" in widget.text
    csp = widget.headers["content-security-policy"]
    assert csp.endswith(f"; frame-ancestors 'self' {PORTAL}")
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp  # no inline script runs
    assert "object-src 'none'" in csp and "default-src 'self'" in csp


def test_cors_allows_the_configured_portal_only(api):
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    ok = api.options("/api/ask", headers={"Origin": PORTAL, **preflight})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == PORTAL
    other = api.options("/api/ask", headers={"Origin": "http://evil.example", **preflight})
    assert "access-control-allow-origin" not in other.headers


def test_an_oversized_body_gets_413_before_it_is_read_whole(api):
    """1 MiB is the default limit for every route but document upload (tests/test_jobs.py)."""
    question = "外资" * 2**19  # 2 MiB of question with a Content-Length
    r = api.post("/api/ask", json={"question": question})
    assert r.status_code == 413 and "larger than 1024 KiB" in r.json()["error"]["message"]

    def chunked():  # no Content-Length: counted as it arrives
        yield b'{"question": "'
        for _ in range(40):
            yield b"a" * 2**15
        yield b'"}'

    r = api.post("/api/ask", content=chunked(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    ok = api.post("/api/ask", json={"question": "莱芜区上半年实际使用外资多少？"})
    assert ok.status_code == 200 and ok.headers["referrer-policy"] == "same-origin"


def test_the_openapi_description_is_served_and_no_page_loads_from_a_cdn(api):
    """FastAPI's Swagger page pulls its script from a CDN: blank on an intranet."""
    assert api.get("/api/openapi.json").json()["paths"]["/api/ask"]
    assert api.get("/api/docs").status_code == 404


def test_the_admin_file_picker_offers_every_format_the_loaders_read():
    page = (Path(__file__).parent.parent / "rag" / "static" / "admin.html").read_text("utf-8")
    offered = set(re.search(r'accept="([^"]+)"', page).group(1).split(","))
    # A picker matches a name's last suffix: .jsonl.gz is offered as .gz.
    records = {"." + suffix.rsplit(".", 1)[-1] for suffix in RECORD_SUFFIXES}
    assert offered == {*FILE_SUFFIXES, *records, ".zip"}
