"""`rag serve` as a service manager stops it (issue 17): SIGTERM lets the answer in flight
finish and stops the running ingest job after its batch; the job resumes at the next
start. The real console script, a real upload, and the local OpenAI-protocol server of
tests/llm_server.py standing in for a slow LLM, so that an answer is surely in flight."""

from __future__ import annotations

import contextlib
import signal
import threading
import time

import httpx

from tests.conftest import CORPUS, REPO, free_port, run_rag, start_server, wait_healthy
from tests.llm_server import LLMServer, Reply, cite

# A long policy: enough chunks that its job is mid-way when the signal comes.
LONG_POLICY = "".join(
    f"第{n}条 示例园区对第{n}类入驻企业按年度营业收入给予分档奖励，最高不超过{n}0万元，"
    "奖励资金由园区财政局会同商务局审核后拨付，企业应当如实申报并接受监督检查。\n"
    for n in range(1, 400)
)


def job_state(url: str, job_id: str) -> dict:
    return httpx.get(f"{url}/api/jobs/{job_id}", timeout=10).json()


def test_sigterm_finishes_the_answer_in_flight_and_resumes_the_job_at_the_next_start(
    tmp_path, e5_dir
):
    data = tmp_path / "data"
    env = {"RAG_DATA_DIR": str(data), "RAG_EMBEDDING_MODEL": str(e5_dir)}
    assert run_rag("ingest", str(CORPUS), env=env).returncode == 0
    with LLMServer() as llm:
        llm.reply = lambda messages: Reply(
            f"上半年实际使用外资3227万美元[{cite(messages, '3227')}]。", delay=3
        )
        env |= {
            "RAG_LLM_BASE_URL": llm.base_url,
            "RAG_LLM_MODEL": "qwen-test",
            "RAG_PROMPTS_DIR": str(REPO / "prompts"),
        }
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start_server(data, port, env)
        try:
            wait_healthy(f"{url}/healthz", proc)
            files = {"files": ("园区奖励办法.txt", LONG_POLICY.encode())}
            (job,) = httpx.post(f"{url}/api/documents", files=files, timeout=60).json()["jobs"]
            deadline = time.monotonic() + 120
            while not (state := job_state(url, job["id"]))["progress"] > 0:
                assert state["status"] in ("queued", "reading", "embedding"), state
                assert time.monotonic() < deadline, state
                time.sleep(0.2)

            answered: dict = {}
            asking = threading.Thread(
                target=lambda: answered.update(
                    response=httpx.post(
                        f"{url}/api/ask",
                        json={"question": "莱芜区上半年实际使用外资多少？"},
                        timeout=60,
                    )
                )
            )
            asking.start()
            while not llm.requests:  # the answer is waiting for the model
                assert asking.is_alive()
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            asking.join(60)
            # uvicorn re-raises the signal once it has shut down gracefully; systemd counts
            # an end by SIGTERM as a clean stop.
            assert proc.wait(60) in (0, -signal.SIGTERM)
        finally:
            if proc.poll() is None:
                proc.kill()
        response = answered["response"]
        assert response.status_code == 200
        assert "3227万美元" in response.json()["answer"]
        log = proc.log_path.read_text()
        assert "Traceback" not in log

        proc = start_server(data, port, env)  # the same data dir: the job is still there
        try:
            wait_healthy(f"{url}/healthz", proc)
            deadline = time.monotonic() + 300
            while (state := job_state(url, job["id"]))["status"] != "indexed":
                assert state["status"] in ("queued", "reading", "embedding"), state
                assert time.monotonic() < deadline, state
                time.sleep(0.5)
            llm.reply = lambda messages: Reply(
                f"最高不超过3990万元[{cite(messages, '3990万元')}]。"
            )
            asked = httpx.post(
                f"{url}/api/ask", json={"question": "第399类入驻企业奖励最高多少？"}, timeout=60
            ).json()
            assert any(c["doc_id"].endswith("园区奖励办法.txt") for c in asked["citations"])
        finally:
            proc.terminate()
            proc.wait(60)


def test_a_zip_upload_killed_mid_request_is_queued_whole_or_not_at_all(tmp_path, e5_dir):
    """SIGKILL the moment the first job of a 200-file zip can be seen in the job table: at
    the next start all 200 jobs are there, or none (issue 32: 134 of 200, 66 untraced)."""
    import io
    import sqlite3
    import zipfile

    data = tmp_path / "data"
    env = {"RAG_DATA_DIR": str(data), "RAG_EMBEDDING_MODEL": str(e5_dir)}
    assert run_rag("ingest", str(CORPUS), env=env).returncode == 0
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(200):
            z.writestr(f"batch/f{i:03d}.txt", f"第一条 第{i}号文件：补贴{i}万元。")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(data, port, env)
    try:
        wait_healthy(f"{url}/healthz", proc)

        def send() -> None:
            with contextlib.suppress(httpx.HTTPError):  # the server dies under it
                httpx.post(f"{url}/api/documents", files={"files": ("z.zip", buf.getvalue())})

        sending = threading.Thread(target=send, daemon=True)
        sending.start()
        table = sqlite3.connect(f"file:{data / 'jobs.sqlite'}?mode=ro", uri=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                if table.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]:
                    break
            except sqlite3.OperationalError:  # locked by the writer: look again
                pass
            assert time.monotonic() < deadline, "no job appeared"
            time.sleep(0.0005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        recorded = table.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
        table.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert recorded == 200
    proc = start_server(data, port, env)
    try:
        wait_healthy(f"{url}/healthz", proc)
        jobs = httpx.get(f"{url}/api/jobs", params={"active": False}, timeout=30).json()
        assert len(jobs) == 200
    finally:
        proc.kill()
