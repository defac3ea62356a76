"""The HTTP API over real HTTP: a uvicorn server on a free port, httpx as the client."""

import json
import socket
import threading
import time

import httpx
import pytest
import uvicorn

from rag.api import create_app

PORTAL = "http://portal.example:8080"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def api(assistant):
    app = create_app(lambda: assistant, [PORTAL], health=lambda: {"chunks": 1})
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    with httpx.Client(base_url=f"http://127.0.0.1:{server.config.port}", timeout=60) as client:
        yield client
    server.should_exit = True
    thread.join(10)


def test_ask_returns_the_rag_ask_json_object(api):
    r = api.post("/api/ask", json={"question": "莱芜区上半年实际使用外资多少？"})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"question", "answer", "refused", "citations", "timings_ms"}
    assert "3227万美元" in body["answer"] and body["citations"][0]["doc_id"].startswith("news/")


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
    assert r.status_code == 422 and "error" in r.json()


def test_chat_completions_answers_with_citations_in_text_and_field(api):
    r = api.post(
        "/v1/chat/completions",
        json={
            "model": "anything",
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
    with api.stream("POST", "/v1/chat/completions", json=request) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert "3227万美元" in text and len(chunks) > 3
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["citations"]


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
    assert api.get("/healthz").json() == {"status": "ok", "chunks": 1}
    widget = api.get("/widget.js")
    assert widget.status_code == 200 and "javascript" in widget.headers["content-type"]
    assert "api/ask" in widget.text and "textContent" in widget.text
    assert widget.headers["content-security-policy"] == f"frame-ancestors 'self' {PORTAL}"


def test_cors_allows_the_configured_portal_only(api):
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    ok = api.options("/api/ask", headers={"Origin": PORTAL, **preflight})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == PORTAL
    other = api.options("/api/ask", headers={"Origin": "http://evil.example", **preflight})
    assert "access-control-allow-origin" not in other.headers
