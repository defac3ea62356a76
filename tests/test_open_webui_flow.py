"""Open WebUI's request flow, replayed with httpx against a real `rag serve`, set up as a
site would: documents ingested into knowledge bases with `rag ingest --kb`, sign-in on,
and the key Open WebUI is given made with `rag keys create`.

The requests are shaped as Open WebUI's backend sends them to an OpenAI-compatible
connection, read from open-webui/open-webui `backend/open_webui/routers/openai.py`
(commit 004a45f5824bd78635cdc39a071af98873fb50c2) and `backend/open_webui/utils/
payload.py`:
- adding the connection (`verify_connection`) and refreshing the model list
  (`send_get_request`): `GET {url}/models` with `Authorization: Bearer <key>` and
  `Content-Type: application/json`, with ENABLE_FORWARD_USER_INFO_HEADERS also
  `X-OpenWebUI-User-Name` (percent-encoded), `-Id`, `-Email`, `-Role`; the model's `name`
  is shown, its `id` is sent back; a non-200 answer's `error` is shown to the admin;
- a chat (`generate_chat_completion`): `POST {url}/chat/completions`, the model's
  advanced parameters copied in (temperature, top_p, max_tokens, frequency_penalty,
  seed, stop), `stream_options: {"include_usage": true}` forced on every streamed
  request, the last message's content turned into a text part carrying
  `cache_control: {"type": "ephemeral"}`, and `X-OpenWebUI-Chat-Id`; the stream is read
  line by line, and a `data:` line holding `"usage"` is booked as the chat's usage.
"""

import json
import os
import shutil
import subprocess
import time
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import CORPUS, RAG, free_port, start_server, wait_healthy

QUESTION = "飞地项目企业投产后前3年按经济贡献的多少给予奖励？"
FOLLOW_UP = "第4年呢？"


@pytest.fixture(scope="module")
def site(tmp_path_factory, e5_dir):
    """`rag serve` with sign-in on over two knowledge bases, and a reader key for 飞地经济
    only; yields (base URL, key, the server's log file)."""
    root = tmp_path_factory.mktemp("open-webui")
    (root / "enclave").mkdir()
    shutil.copy(CORPUS / "policies" / "enclave-economy.md", root / "enclave")
    env = {**os.environ, "RAG_DATA_DIR": str(root / "data"), "RAG_EMBEDDING_MODEL": str(e5_dir)}
    for folder, kb in ((root / "enclave", "飞地经济"), (CORPUS / "news", "内部资料")):
        subprocess.run([RAG, "ingest", str(folder), "--kb", kb], env=env, check=True)
    created = subprocess.run(
        [RAG, "keys", "create", "--name", "open-webui", "--kb", "飞地经济", "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    key = json.loads(created.stdout)["key"]
    port = free_port()
    proc = start_server(
        root / "data",
        port,
        {
            "RAG_AUTH": "header",
            "RAG_FORWARDED_ALLOW_IPS": "127.0.0.2",  # nobody here: the client uses a key
            "RAG_EMBEDDING_MODEL": str(e5_dir),
        },
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}/healthz", proc)
        yield f"http://127.0.0.1:{port}/v1", key, proc.log_path
    finally:
        proc.terminate()
        proc.wait(60)


def forwarded_user() -> dict:
    """ENABLE_FORWARD_USER_INFO_HEADERS: who is chatting in Open WebUI (ignored here)."""
    return {
        "X-OpenWebUI-User-Name": quote("张三", safe=" "),
        "X-OpenWebUI-User-Id": "0b6c7a52-4f0e-4f5b-9d43-2b1f0e4c9a11",
        "X-OpenWebUI-User-Email": "zhangsan@example.gov.cn",
        "X-OpenWebUI-User-Role": "user",
    }


def headers(key: str) -> dict:
    return {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}


def with_cache_control(message: dict) -> dict:
    return {
        **message,
        "content": [
            {"type": "text", "text": message["content"], "cache_control": {"type": "ephemeral"}}
        ],
    }


def chat_payload(model: str, messages: list[dict]) -> dict:
    return {
        "model": model,
        "messages": [*messages[:-1], with_cache_control(messages[-1])],
        "stream": True,
        "temperature": 0.8,
        "top_p": 0.9,
        "max_tokens": 1024,
        "frequency_penalty": 0.0,
        "seed": 42,
        "stop": ["<|im_end|>"],
        "stream_options": {"include_usage": True},
    }


def read_stream(response: httpx.Response) -> tuple[str, dict | None, list[str]]:
    """The stream as Open WebUI reads it: the text of the deltas, the usage it books, and
    every `data:` line."""
    lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    text, booked = "", None
    for data in lines:
        if data == "[DONE]":
            continue
        chunk = json.loads(data)
        for choice in chunk.get("choices", []):
            text += choice.get("delta", {}).get("content") or ""
        if chunk.get("usage"):
            booked = chunk["usage"]
    return text, booked, lines


def logged(log_path, line: str, times: int, timeout: float = 30) -> str:
    """The server's log once `line` is in it `times` times: a streamed response's line is
    written after its last byte has gone out, so it may trail the client's read."""
    deadline = time.monotonic() + timeout
    while (log := log_path.read_text("utf-8")).count(line) < times:
        assert time.monotonic() < deadline, f"not logged {times}×: {line}"
        time.sleep(0.1)
    return log


def test_open_webui_adds_the_connection_lists_models_and_chats(site):
    url, key, log_path = site
    # Adding the connection: the admin's check, then the model list it keeps.
    verified = httpx.get(f"{url}/models", headers=headers(key))
    assert verified.status_code == 200
    listed = httpx.get(f"{url}/models", headers={**headers(key), **forwarded_user()}).json()
    assert [(m["id"], m["name"]) for m in listed["data"]] == [
        ("policy-rag", "招商政策问答"),
        ("policy-rag:飞地经济", "招商政策问答 · 飞地经济"),
    ]  # the key reads 飞地经济 only: 内部资料 is not offered
    # A first question, streamed.
    first = [{"role": "user", "content": QUESTION}]
    chat_headers = {**headers(key), **forwarded_user(), "X-OpenWebUI-Chat-Id": "c-1"}
    with httpx.stream(
        "POST",
        f"{url}/chat/completions",
        json=chat_payload("policy-rag:飞地经济", first),
        headers=chat_headers,
        timeout=120,
    ) as r:
        assert r.status_code == 200 and "text/event-stream" in r.headers["content-type"]
        answer, usage, lines = read_stream(r)
    assert "60%" in answer and "来源：" in answer and "明川区促进飞地经济发展的若干政策" in answer
    assert lines[-1] == "[DONE]"
    assert usage == {
        "prompt_tokens": len(QUESTION),
        "completion_tokens": len(answer),
        "total_tokens": len(QUESTION) + len(answer),
    }
    # The follow-up carries the conversation back, the earlier turns as plain strings.
    follow_up = [
        *first,
        {"role": "assistant", "content": answer},
        {"role": "user", "content": FOLLOW_UP},
    ]
    with httpx.stream(
        "POST",
        f"{url}/chat/completions",
        json=chat_payload("policy-rag:飞地经济", follow_up),
        headers=chat_headers,
        timeout=120,
    ) as r:
        second, usage, _ = read_stream(r)
    assert "30%" in second and usage["prompt_tokens"] == len(QUESTION + answer + FOLLOW_UP)
    # One log line per request, and never the question's text.
    log = logged(log_path, "route=/v1/chat/completions status=200", 2)
    assert "route=/v1/models status=200" in log
    assert log.count("route=/v1/chat/completions status=200") == 2 and "stream=True" in log
    assert QUESTION not in log and FOLLOW_UP not in log


def test_open_webui_shows_our_error_when_the_connection_is_refused(site):
    """Open WebUI shows `External Error: {error}` from a non-200 answer's JSON."""
    url, key, _ = site
    no_key = httpx.get(f"{url}/models", headers={"Content-Type": "application/json"})
    assert no_key.status_code == 401
    assert no_key.json()["error"]["message"] == "send an API key: Authorization: Bearer rag_…"
    hidden = httpx.post(
        f"{url}/chat/completions",
        json=chat_payload("policy-rag:内部资料", [{"role": "user", "content": "莱芜区外资"}]),
        headers=headers(key),
    )
    assert hidden.status_code == 403 and hidden.headers["content-type"] == "application/json"
    assert hidden.json()["error"] == {
        "message": "no access to knowledge base '内部资料'",
        "type": "permission_error",
        "param": "model",
        "code": None,
    }
