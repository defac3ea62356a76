"""Two defects from an attack on the running server, repeated N times each (issue 32).

Usage: .venv/bin/python bench/attack_repeats.py [--rounds 5] [--only rebuild|restart]

rebuild  A data dir with 2 documents ingested from `kbpub --kb 公开`, 1 from
         `kbsec --kb 内部资料`, 4 uploaded to 公开 through the API and one title corrected
         with PATCH; the server stopped; `rag ingest --rebuild kbpub --kb 公开 --json`; the
         server started again. A round passes when all 7 documents are there, in their
         knowledge bases, the corrected title stands and no kept original is orphaned.
restart  ~1,000 small .txt queued as one zip; the server SIGKILLed while it works through
         them, started again, SIGKILLed again…: a round passes when /healthz answers within
         60 s of the restart and the server becomes ready (a warm-up and the job worker in
         the same OpenVINO model hung one restart in two).

Real processes, loopback only, temporary data dirs removed at the end. Prints one line per
round and a JSON summary of the counts.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
RAG = str(Path(sys.executable).with_name("rag"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data: Path, env: dict):
        self.data, self.env, self.port = data, env, free_port()
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> float:
        """Start; seconds until /healthz answers (inf if not within 60 s)."""
        log = open(self.data / "serve.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [RAG, "serve", "--port", str(self.port)], env=self.env, stdout=log, stderr=log
        )
        started = time.monotonic()
        while time.monotonic() - started < 60:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        return float("inf")

    def ready(self, timeout: float = 120) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        return False

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()


def rag(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([RAG, *args], env=env, capture_output=True, text=True, timeout=600)


def wait_jobs(client: httpx.Client, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end and client.get("/api/jobs", params={"active": True}).json():
        time.sleep(0.3)


def rebuild_round(work: Path) -> tuple[bool, str]:
    data = work / "data"
    env = {**os.environ, "RAG_DATA_DIR": str(data)}
    for name, texts in {
        "kbpub": [
            "第一条 公开文件一：楼宇入驻奖励二十万元。",
            "第一条 公开文件二：首年租金补贴五成。",
        ],
        "kbsec": ["第一条 内部文件：人才公寓补贴三万元。"],
    }.items():
        (work / name).mkdir()
        for n, text in enumerate(texts):
            (work / name / f"{name}-{n}.txt").write_text(text, "utf-8")
    for name, kb in (("kbpub", "公开"), ("kbsec", "内部资料")):
        result = rag("ingest", str(work / name), "--kb", kb, env=env)
        if result.returncode:
            return False, f"ingest {name}: {result.stderr.strip()[-200:]}"
    server = Server(data, env)
    try:
        server.start()
        with httpx.Client(base_url=server.url, timeout=60) as client:
            files = [
                ("files", (f"up-{n}.txt", f"第一条 上传文件{n}：设备补贴{n + 1}十万元。".encode()))
                for n in range(4)
            ]
            assert (
                client.post("/api/documents", files=files, data={"kb": "公开"}).status_code == 202
            )
            wait_jobs(client)
            edit = client.patch("/api/documents/公开/up-0.txt", json={"title": "人工更正的标题"})
            assert edit.status_code in (200, 202), edit.text
            wait_jobs(client)
    finally:
        server.stop()
    result = rag("ingest", "--rebuild", str(work / "kbpub"), "--kb", "公开", "--json", env=env)
    if result.returncode:
        return False, f"rebuild: {result.stderr.strip()[-200:]}"
    removed = json.loads(result.stdout)["removed"]
    server = Server(data, env)
    try:
        server.start()
        with httpx.Client(base_url=server.url, timeout=60) as client:
            docs = {d["doc_id"]: d for d in client.get("/api/documents").json()}
    finally:
        server.stop()
    kept = {p.relative_to(data).as_posix() for p in (data / "originals").rglob("*") if p.is_file()}
    title = docs.get("公开/up-0.txt", {}).get("title")
    kbs = sorted({d["kb"] for d in docs.values()})
    ok = len(docs) == 7 and removed == 0 and title == "人工更正的标题" and len(kept) == 4
    return ok, (
        f"removed={removed} documents={len(docs)} kbs={kbs} title={title!r} kept_originals={len(kept)}"
    )


def restart_round(work: Path, server: Server, n: int) -> tuple[bool, str]:
    server.kill()
    seconds = server.start()
    if seconds == float("inf"):
        server.kill()
        return False, "/healthz did not answer within 60 s"
    ready = server.ready()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        active = len(client.get("/api/jobs", params={"active": True}).json())
        # Let the worker and the warm-up run into each other before the next kill.
        time.sleep(3 + n % 3)
    return ready, f"healthz after {seconds:.1f} s, ready={ready}, active jobs={active}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=("rebuild", "restart"))
    parser.add_argument("--files", type=int, default=1000)
    args = parser.parse_args()
    summary: dict[str, dict[str, int]] = {}
    if args.only in (None, "rebuild"):
        counts = {"rounds": 0, "passed": 0}
        for n in range(args.rounds):
            work = Path(tempfile.mkdtemp(prefix="attack-rebuild-"))
            try:
                ok, said = rebuild_round(work)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            counts["rounds"] += 1
            counts["passed"] += ok
            print(f"rebuild round {n + 1}: {'PASS' if ok else 'FAIL'} {said}", flush=True)
        summary["rebuild"] = counts
    if args.only in (None, "restart"):
        counts = {"rounds": 0, "passed": 0, "hung": 0}
        work = Path(tempfile.mkdtemp(prefix="attack-restart-"))
        data = work / "data"
        env = {**os.environ, "RAG_DATA_DIR": str(data)}
        server = Server(data, env)
        try:
            rag("ingest", str(REPO / "corpus"), env=env)
            server.start()
            server.ready()
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as z:
                for i in range(args.files):
                    z.writestr(f"batch/f{i:04d}.txt", f"第一条 第{i}号文件：补贴{i}万元。")
            reply = httpx.post(
                server.url + "/api/documents",
                files=[("files", ("batch.zip", buf.getvalue()))],
                timeout=120,
            )
            assert reply.status_code == 202, reply.text
            time.sleep(3)
            for n in range(args.rounds):
                ok, said = restart_round(work, server, n)
                counts["rounds"] += 1
                counts["passed"] += ok
                counts["hung"] += "did not answer" in said
                print(f"restart round {n + 1}: {'PASS' if ok else 'FAIL'} {said}", flush=True)
        finally:
            server.kill()
            shutil.rmtree(work, ignore_errors=True)
        summary["restart"] = counts
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
