"""Shared fixtures. Every test gets its own data dir; the real e5 model is materialised
once per session and shared, so integration tests pay for it once."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from rag import e5_bundle
from rag.embed import LazyEmbeddings
from rag.index import Index

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "corpus"
RAG = str(Path(sys.executable).with_name("rag"))


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """No test reads the developer's RAG_* settings or writes into the repo."""
    for key in list(os.environ):
        if key.startswith("RAG_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def e5_dir(tmp_path_factory) -> Path:
    """The bundled e5 model, materialised once for the whole session."""
    return e5_bundle.materialise(tmp_path_factory.mktemp("models") / "multilingual-e5-small")


@pytest.fixture(scope="session")
def embeddings(e5_dir, tmp_path_factory) -> LazyEmbeddings:
    """One loaded real model shared by every in-process test."""
    return LazyEmbeddings(str(e5_dir), tmp_path_factory.mktemp("unused"))


@pytest.fixture(scope="session")
def corpus_index(embeddings, tmp_path_factory) -> Index:
    """The shipped corpus, indexed once per session; tests must only read it."""
    from rag.ingest import ingest

    index = Index(tmp_path_factory.mktemp("corpus-data"), "corpus", embeddings)
    ingest([CORPUS], index, 300, 60)
    return index


@pytest.fixture(scope="session")
def assistant(corpus_index):
    from rag.chain import build_assistant
    from rag.config import Settings

    return build_assistant(Settings(), corpus_index)


@pytest.fixture(scope="session")
def two_kb_assistant(embeddings, tmp_path_factory):
    """The shipped corpus in two knowledge bases: the policies in 政策, the news article
    in 内部资料 (material not every reader may see). Tests must only read it."""
    from rag.chain import build_assistant
    from rag.config import Settings
    from rag.ingest import ingest

    index = Index(tmp_path_factory.mktemp("two-kb-data"), "corpus", embeddings)
    ingest([CORPUS / "policies"], index, 300, 60, kb="政策")
    ingest([CORPUS / "news"], index, 300, 60, kb="内部资料")
    return build_assistant(Settings(), index)


@pytest.fixture
def index(tmp_path, embeddings) -> Index:
    return Index(tmp_path / "data", "test", embeddings)


@pytest.fixture
def corpus_copy(tmp_path) -> Path:
    """A writable copy of the shipped corpus."""
    target = tmp_path / "corpus"
    shutil.copytree(CORPUS, target)
    return target


def run_rag(*args: str, env: dict | None = None, timeout: float = 300, **kw):
    """Run the installed `rag` console script as a user would."""
    return subprocess.run(
        [RAG, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        **kw,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(app, port: int | None = None):
    """`app` served by uvicorn on `port` (a free one by default); yields an httpx client."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port or free_port(), log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.config.port}", timeout=60) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)


def sse_events(api, request: dict) -> list[dict]:
    """The chunks of a streamed chat completion (after checking the stream's framing)."""
    with api.stream("POST", "/v1/chat/completions", json=request) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    return chunks


def streamed_text(chunks: list[dict]) -> str:
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = getattr(proc, "log_path", None)
            raise RuntimeError(f"server exited: {log.read_text() if log else ''}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(url)


def start_server(data_dir: Path, port: int, env: dict) -> subprocess.Popen:
    """`rag serve`, its log in a file beside the data dir: a pipe nobody reads would fill
    up with the server's request log lines and stall it."""
    log_path = data_dir.parent / f"serve-{port}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [RAG, "serve", "--port", str(port)],
            env={**os.environ, "RAG_DATA_DIR": str(data_dir), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    proc.log_path = log_path
    return proc
