"""With a `chroma run` server (RAG_CHROMA_URL), several processes may write one index: a
running `rag serve` and `rag ingest` beside it, each following what the other published.
A real Chroma server on a free loopback port, the real console scripts."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, run_rag, start_server, wait_healthy

CHROMA = str(Path(sys.executable).with_name("chroma"))
NEW_FACT = "示例新区办法\n第一条 新区引进独角兽企业，给予一次性奖励九百九十九万元。\n"


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory):
    root = tmp_path_factory.mktemp("chroma")
    port = free_port()
    with open(root / "chroma.log", "w") as log:
        proc = subprocess.Popen(
            [CHROMA, "run", "--path", str(root / "db"), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (root / "chroma.log").read_text()
            try:
                if httpx.get(f"{url}/api/v2/heartbeat", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "chroma run never answered"
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_server_and_rag_ingest_write_one_index_through_a_chroma_server(
    chroma_url, tmp_path, e5_dir, corpus_copy
):
    data = tmp_path / "data"
    env = {
        "RAG_CHROMA_URL": chroma_url,
        "RAG_EMBEDDING_MODEL": str(e5_dir),
        "RAG_DATA_DIR": str(data),
    }
    first = run_rag("ingest", str(corpus_copy), env=env)
    assert first.returncode == 0, first.stderr
    port = free_port()
    proc = start_server(data, port, env)
    server = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(f"{server}/readyz", proc)
        before = httpx.post(
            f"{server}/api/ask", json={"question": "独角兽企业奖励多少？"}, timeout=60
        ).json()
        assert "九百九十九万元" not in before["answer"]

        folder = tmp_path / "new"
        folder.mkdir()
        (folder / "new.md").write_text(NEW_FACT, "utf-8")
        beside = run_rag("ingest", str(folder), "--kb", "新区", env=env)
        assert beside.returncode == 0, beside.stderr  # allowed: Chroma is a server here

        after = httpx.post(
            f"{server}/api/ask", json={"question": "独角兽企业奖励多少？", "kb": "新区"}, timeout=60
        ).json()
        assert "九百九十九万元" in after["answer"]
        assert after["generation"] > before["generation"]
        assert [c["doc_id"] for c in after["citations"]] == ["new.md"]

        asked = run_rag("ask", "--json", "--kb", "新区", "独角兽企业奖励多少？", env=env)
        assert asked.returncode == 0 and "九百九十九万元" in asked.stdout
    finally:
        proc.terminate()
        proc.wait(60)
    assert "Traceback" not in proc.log_path.read_text()


def ask(server: str, question: str, **body) -> dict:
    reply = httpx.post(f"{server}/api/ask", json={"question": question, **body}, timeout=60)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_two_replicas_share_one_index_through_the_chroma_server(
    chroma_url, tmp_path, e5_dir, corpus_copy
):
    """Two `rag serve` replicas, each with a data dir of its own (nothing shared but the
    Chroma server): a document uploaded to one is answered by the other on its next
    request, without a restart, and its removal is followed too. The follower reads
    only what changed, not the whole index again."""
    env = {
        "RAG_CHROMA_URL": chroma_url,
        "RAG_EMBEDDING_MODEL": str(e5_dir),
        "RAG_COLLECTION": "replicas",
    }
    first = run_rag("ingest", str(corpus_copy), env={**env, "RAG_DATA_DIR": str(tmp_path / "a")})
    assert first.returncode == 0, first.stderr
    servers, procs = [], []
    try:
        for name in ("a", "b"):
            port = free_port()
            (tmp_path / name).mkdir(exist_ok=True)
            procs.append(start_server(tmp_path / name, port, env))
            servers.append(f"http://127.0.0.1:{port}")
        for server, proc in zip(servers, procs, strict=True):
            wait_healthy(f"{server}/readyz", proc)
        writer, follower = servers
        before = ask(follower, "莱芜区上半年实际使用外资多少？")
        assert "3227万美元" in before["answer"]  # B answers from what was ingested through A's dir
        # B read the sentence vectors A's ingest put on the server, and ranks and quotes alike.
        same = ask(writer, "莱芜区上半年实际使用外资多少？")
        assert same["answer"] == before["answer"]
        assert [(c["chunk_id"], c["quotes"]) for c in same["citations"]] == [
            (c["chunk_id"], c["quotes"]) for c in before["citations"]
        ]
        assert "九百九十九万元" not in ask(follower, "独角兽企业奖励多少？")["answer"]

        files = {"files": ("new.md", NEW_FACT.encode())}
        reply = httpx.post(f"{writer}/api/documents", files=files, data={"kb": "新区"}, timeout=60)
        assert reply.status_code == 202, reply.text
        (job,) = reply.json()["jobs"]
        deadline = time.monotonic() + 180
        while (state := httpx.get(f"{writer}/api/jobs/{job['id']}").json())["status"] != "indexed":
            assert state["status"] not in ("failed", "no_text", "cancelled"), state
            assert time.monotonic() < deadline, state
            time.sleep(0.5)

        after = ask(follower, "独角兽企业奖励多少？", kb="新区")
        assert "九百九十九万元" in after["answer"]
        assert after["generation"] > before["generation"]
        assert [c["doc_id"] for c in after["citations"]] == ["新区/new.md"]
        listed = httpx.get(f"{follower}/api/documents", params={"kb": "新区"}).json()
        assert [d["doc_id"] for d in listed] == ["新区/new.md"]

        removed = httpx.delete(f"{writer}/api/documents/新区/new.md", timeout=60)
        assert removed.status_code == 202, removed.text
        deadline = time.monotonic() + 120
        while httpx.get(f"{writer}/api/documents", params={"kb": "新区"}).json():
            assert time.monotonic() < deadline
            time.sleep(0.5)
        gone = ask(follower, "独角兽企业奖励多少？")
        assert "九百九十九万元" not in gone["answer"]
        assert gone["generation"] > after["generation"]
        assert "3227万美元" in ask(follower, "莱芜区上半年实际使用外资多少？")["answer"]
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(60)
    follower_log = procs[1].log_path.read_text()
    assert "Traceback" not in follower_log and "Traceback" not in procs[0].log_path.read_text()
    assert "1 documents written since" in follower_log  # followed, not rebuilt
    assert "computed the sentence vectors of" not in follower_log  # read from the server
