"""Concurrency: answer latency and throughput of `rag serve` under concurrent clients.

Usage: .venv/bin/python bench/concurrency.py [--quick] [--json] [--out FILE] [--phases A,B,C]

One run, one fresh server: `corpus/` is copied to a temporary folder and indexed with
`rag ingest` into a temporary data dir, `rag serve` starts on a free loopback port, and
after a warm-up (the first answer loads the model) it measures

  A  1, 8 and 32 API clients, each in a closed loop of `POST /api/ask` over a fixed list
     of questions about the corpus, while a prober GETs `/healthz` every 100 ms;
  B  1 and 8 Gradio chat sessions (gradio_client, the "/chat" endpoint), N questions each;
  C  8 API clients (and the prober) while the server indexes an upload: the first
     `--records` records of crud-news (`POST /api/documents`, kb "bench"), answer latency
     counted only while the job is `reading`/`embedding`; then one question whose answer
     is a sentence of an uploaded record, asked with kb "bench", must cite that upload.

Ratios are against baselines of the same run: throughput at 8 clients / at 1 client,
answer p95 during the ingest job / p95 of phase A at 8 clients. Targets are printed as
PASS/FAIL; the exit code is 0 either way, 2 when the run could not be set up. The server
is always stopped and the temporary folders removed (also on Ctrl-C). Loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "corpus"
CRUD_NEWS = REPO.parent / "shared" / "benchmarks" / "crud-news" / "docs.jsonl.gz"
HOST = "127.0.0.1"

QUESTIONS = [
    "莱芜区上半年实际使用外资多少？",
    "飞地项目投产后前三年按多大比例奖励？",
    "在明川区写字楼租办公室，第一年租金补贴多少？",
    "招商项目评审打分看哪些方面？",
    "新引进的总部企业拿落户奖励要满足什么条件？",
    "新设外资企业当年到资500万美元以上怎么奖励？",
    "外资企业用未分配利润再投资算不算实际使用外资？",
    "重大项目全生命周期分为哪几个阶段？",
    "青禾—明川飞地产业园规划面积有多大，首期开发多少亩？",
    "招商项目评审专家库至少要有多少名专家？",
    "要素保障里A类项目的投资门槛是多少？",
    "莱芜区这次集中签约了多少个项目，总投资多少？",
]
JOB_ACTIVE = {"reading", "embedding"}
JOB_DONE = {"indexed", "failed", "no_text", "cancelled"}
ASK_TIMEOUT = 120.0  # seconds any one answer may take before it counts as an error
PROBE_EVERY = 0.1
KB = "bench"


class SetupError(Exception):
    """The run could not be set up: one line, exit code 2."""


class PhaseError(Exception):
    """A phase could not run (e.g. the server lacks an endpoint): reported, not raised."""


def _interrupt(signum, frame):  # SIGTERM cleans up like Ctrl-C
    raise KeyboardInterrupt


# ---------------------------------------------------------------------------- figures


def percentile(values: list[float], p: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * p / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


@dataclass
class Call:
    start: float
    end: float
    ok: bool
    error: str = ""
    timings: dict | None = None  # timings_ms of an API answer (server side)

    @property
    def seconds(self) -> float:
        return self.end - self.start


def summarise(name: str, clients: int, calls: list[Call], probe: list[Call] | None) -> dict:
    """Latency of the successful calls, errors, throughput = calls / wall seconds."""
    good = [c.seconds for c in calls if c.ok]
    wall = (max(c.end for c in calls) - min(c.start for c in calls)) if calls else 0.0
    errors = [c.error for c in calls if not c.ok]
    stages: dict[str, list[float]] = {}
    for c in calls:
        for key, value in (c.timings or {}).items() if c.ok else ():
            if isinstance(value, (int, float)):
                stages.setdefault(key, []).append(float(value))
    row = {
        "phase": name,
        "clients": clients,
        "requests": len(calls),
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:5],
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(good) / wall, 2) if wall > 0 else None,
        "p50_ms": ms(percentile(good, 50)),
        "p95_ms": ms(percentile(good, 95)),
        "max_ms": ms(max(good)) if good else None,
        # where the time goes inside the server: p50 of each timings_ms stage
        "server_p50_ms": {k: round(percentile(v, 50), 1) for k, v in stages.items()},
    }
    if probe is not None:
        pgood = [c.seconds for c in probe if c.ok]
        row |= {
            "healthz_probes": len(probe),
            "healthz_errors": sum(not c.ok for c in probe),
            "healthz_p50_ms": ms(percentile(pgood, 50)),
            "healthz_p95_ms": ms(percentile(pgood, 95)),
            "healthz_max_ms": ms(max(pgood)) if pgood else None,
        }
    return row


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__


def http_error(response: httpx.Response) -> str:
    try:
        message = response.json()["error"]["message"]
    except Exception:
        message = response.text[:160]
    return f"HTTP {response.status_code}: {message}"


def new_http(timeout: float = ASK_TIMEOUT) -> httpx.Client:
    # trust_env=False: a proxy in the environment must never see loopback traffic
    return httpx.Client(timeout=timeout, trust_env=False)


# ---------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def rag_command() -> str:
    for candidate in (Path(sys.executable).with_name("rag"), REPO / ".venv" / "bin" / "rag"):
        if candidate.exists():
            return str(candidate)
    raise SetupError("no `rag` command beside this Python; run with .venv/bin/python")


class Server:
    """A fresh data dir with corpus/ indexed, and `rag serve` on it until `stop()`."""

    def __init__(self, work: Path, log):
        self.work = work
        self.log = log
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.log_path = work / "server.log"
        # the developer's RAG_* settings (an LLM endpoint, another model) stay out
        base = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
        self.env = base | {
            "RAG_DATA_DIR": str(work / "data"),
            "HF_HUB_OFFLINE": "1",
            "GRADIO_ANALYTICS_ENABLED": "False",
            "NO_PROXY": HOST,
        }

    def prepare(self) -> float:
        corpus = self.work / "corpus"
        shutil.copytree(CORPUS, corpus)
        started = time.perf_counter()
        try:
            done = subprocess.run(
                [rag_command(), "ingest", str(corpus)],
                env=self.env,
                cwd=self.work,
                capture_output=True,
                text=True,
                timeout=900,
            )
        except subprocess.TimeoutExpired:
            raise SetupError("`rag ingest` of corpus/ took over 900 s") from None
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines() or ["(no output)"]
            raise SetupError(f"`rag ingest` of corpus/ failed: {last[-1]}")
        return time.perf_counter() - started

    def start(self, timeout: float = 300) -> float:
        port = free_port()
        self.url = f"http://{HOST}:{port}"
        started = time.perf_counter()
        with self.log_path.open("w") as out:
            self.proc = subprocess.Popen(
                [rag_command(), "serve", "--host", HOST, "--port", str(port)],
                env=self.env,
                cwd=self.work,
                stdout=out,  # a file, never a pipe nobody drains
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us; we stop it in order
            )
        deadline = time.monotonic() + timeout
        with new_http(2) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise SetupError(
                        f"`rag serve` exited with {self.proc.returncode}: {self.tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(f"{self.url}/healthz").status_code == 200:
                        return time.perf_counter() - started
                time.sleep(0.5)
        raise SetupError(f"`rag serve` did not answer /healthz within {timeout:.0f} s")

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            lines = [x for x in self.log_path.read_text("utf-8", "replace").splitlines() if x]
            return lines[-1][:200] if lines else "(no output)"
        return "(no log)"

    def log_findings(self) -> dict:
        """Tracebacks, error lines and non-2xx/3xx access-log lines in the server's output."""
        try:
            lines = self.log_path.read_text("utf-8", "replace").splitlines()
        except OSError:
            return {}
        status = re.compile(r'" (\d{3}) ')
        bad_status: dict[str, int] = {}
        errors: list[str] = []
        for line in lines:
            if (m := status.search(line)) and m.group(1)[0] in "45":
                bad_status[m.group(1)] = bad_status.get(m.group(1), 0) + 1
            elif "Traceback" in line or re.search(r"\b(ERROR|Error|Exception)\b", line):
                errors.append(line.strip()[:200])
        return {
            "lines": len(lines),
            "tracebacks": sum("Traceback" in x for x in lines),
            "non_2xx_access_lines": bad_status,
            "error_lines": len(errors),
            "error_samples": list(dict.fromkeys(errors))[:8],
        }

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)  # the group we started: server + children
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


# ---------------------------------------------------------------------------- load


class Prober(threading.Thread):
    """GET /healthz every 100 ms until stopped (or `limit` seconds), recording latency."""

    def __init__(self, url: str, limit: float):
        super().__init__(daemon=True)
        self.url = f"{url}/healthz"
        self.limit = limit
        self.calls: list[Call] = []
        self.halt = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.limit
        with new_http(10) as http:
            for _ in range(int(self.limit / PROBE_EVERY) + 1):
                if self.halt.is_set() or time.monotonic() > deadline:
                    break
                start = time.perf_counter()
                try:
                    r = http.get(self.url)
                    ok, err = r.status_code == 200, "" if r.status_code == 200 else http_error(r)
                except httpx.HTTPError as exc:
                    ok, err = False, describe(exc)
                end = time.perf_counter()
                self.calls.append(Call(start, end, ok, err))
                self.halt.wait(max(0.0, PROBE_EVERY - (end - start)))

    def finish(self) -> list[Call]:
        self.halt.set()
        self.join(15)
        return list(self.calls)


def ask_once(http: httpx.Client, url: str, body: dict) -> tuple[Call, dict | None]:
    start = time.perf_counter()
    try:
        r = http.post(f"{url}/api/ask", json=body)
    except httpx.HTTPError as exc:
        return Call(start, time.perf_counter(), False, describe(exc)), None
    end = time.perf_counter()
    if r.status_code != 200:
        return Call(start, end, False, http_error(r)), None
    try:
        data = r.json()
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("answer"), str):
        return Call(start, end, False, "HTTP 200 without an answer object"), None
    timings = data.get("timings_ms")
    return Call(start, end, True, timings=timings if isinstance(timings, dict) else None), data


def api_clients(
    url: str, clients: int, per_client: int, limit: float, halt: threading.Event | None = None
) -> list[Call]:
    """`clients` threads, each asking `per_client` questions in a closed loop (or until
    `halt` is set or `limit` seconds pass). Client i starts at question i."""
    halt = halt or threading.Event()
    deadline = time.monotonic() + limit
    results: list[list[Call]] = [[] for _ in range(clients)]
    gate = threading.Barrier(clients + 1)

    def work(i: int) -> None:
        with new_http() as http:
            gate.wait()
            for n in range(per_client):
                if halt.is_set() or time.monotonic() > deadline:
                    break
                question = QUESTIONS[(i + n) % len(QUESTIONS)]
                results[i].append(ask_once(http, url, {"question": question})[0])

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    gate.wait()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()) + ASK_TIMEOUT + 5)
    return [c for calls in results for c in calls]


def phase_api(url: str, clients: int, total: int, limit: float) -> dict:
    per_client = max(1, -(-total // clients))
    prober = Prober(url, limit + ASK_TIMEOUT)
    prober.start()
    try:
        calls = api_clients(url, clients, per_client, limit)
    finally:
        probe = prober.finish()
    return summarise(f"A api c={clients}", clients, calls, probe)


# ---------------------------------------------------------------------------- chat


class Chat:
    """One Gradio chat session through gradio_client, whatever the /chat signature is:
    (message, since, until, source, k) when history is kept by the server, or with a
    `history` parameter after the message."""

    def __init__(self, url: str):
        from gradio_client import Client

        self.client = Client(url + "/", verbose=False)
        self.history: list[dict] = []

    params: list[dict] | None = None  # the /chat signature, read once per run

    def signature(self) -> list[dict]:
        if Chat.params is None:
            api = self.client.view_api(return_format="dict", print_info=False)
            endpoint = api.get("named_endpoints", {}).get("/chat")
            if endpoint is None:
                raise SetupError("the Gradio app has no /chat endpoint (api_name='chat')")
            Chat.params = endpoint["parameters"]
        return Chat.params

    def arguments(self, message: str) -> list:
        values = []
        for i, p in enumerate(self.signature()):
            name = (p.get("parameter_name") or p.get("label") or "").lower()
            if i == 0:
                values.append(message)
            elif "history" in name or p.get("component") == "Chatbot":
                values.append(list(self.history))
            elif name == "k":
                values.append(5)
            elif p.get("parameter_has_default"):
                values.append(p.get("parameter_default"))
            elif p.get("component") == "Dropdown":
                values.append(p.get("example_input"))
            else:
                values.append("")
        return values

    def ask(self, message: str) -> Call:
        start = time.perf_counter()
        try:
            job = self.client.submit(*self.arguments(message), api_name="/chat")
            result = job.result(timeout=ASK_TIMEOUT)
        except Exception as exc:
            return Call(start, time.perf_counter(), False, describe(exc))
        end = time.perf_counter()
        text = result[0] if isinstance(result, (list, tuple)) and result else result
        if isinstance(text, dict):  # a message object
            text = text.get("content", "")
        text = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False)
        self.history += [
            {"role": "user", "content": message},
            {"role": "assistant", "content": text},
        ]
        if not text.strip():
            return Call(start, end, False, "empty chat answer")
        if text.startswith("⚠️"):
            return Call(start, end, False, f"chat said: {text[:120]}")
        return Call(start, end, True)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()


def phase_chat(url: str, sessions: int, questions: int, limit: float) -> dict:
    chats = []
    try:
        for _ in range(sessions):  # the config fetch is not part of the measurement
            chats.append(Chat(url))
        chats[0].signature()
    except SetupError:
        raise
    except Exception as exc:
        raise PhaseError(f"gradio_client could not connect: {describe(exc)}") from None
    deadline = time.monotonic() + limit
    results: list[list[Call]] = [[] for _ in range(sessions)]
    gate = threading.Barrier(sessions + 1)

    def work(i: int) -> None:
        gate.wait()
        for n in range(questions):
            if time.monotonic() > deadline:
                break
            # each session keeps to its own questions: a conversation, not a replay
            results[i].append(chats[i].ask(QUESTIONS[(i * 5 + n) % len(QUESTIONS)]))

    prober = Prober(url, limit + ASK_TIMEOUT)
    prober.start()
    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(sessions)]
    try:
        for t in threads:
            t.start()
        gate.wait()
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()) + ASK_TIMEOUT + 5)
    finally:
        probe = prober.finish()
        for chat in chats:
            chat.close()
    return summarise(f"B chat x{sessions}", sessions, [c for r in results for c in r], probe)


# ---------------------------------------------------------------------------- ingest job


def write_records(path: Path, records: int) -> list[dict]:
    if not CRUD_NEWS.exists():
        raise PhaseError(f"{CRUD_NEWS} is missing (see its SOURCE.md)")
    kept = []
    with (
        gzip.open(CRUD_NEWS, "rt", encoding="utf-8") as src,
        path.open("w", encoding="utf-8") as dst,
    ):
        for n, line in enumerate(src):
            if n >= records:
                break
            kept.append(json.loads(line))
            dst.write(line if line.endswith("\n") else line + "\n")
    return kept


def probe_question(records: list[dict]) -> tuple[str, str]:
    """A sentence found in exactly one uploaded record, from the middle of the upload:
    asked as the question, its answer can only come from that record."""
    texts = [r["text"] for r in records]
    for offset in range(len(records)):
        record = records[(len(records) // 2 + offset) % len(records)]
        for sentence in re.split(r"(?<=[。！？])", record["text"]):
            sentence = sentence.strip()
            if 20 <= len(sentence) <= 60 and sum(sentence in t for t in texts) == 1:
                return sentence, str(record["id"])
    raise PhaseError("no sentence unique to one record was found for the search check")


def find_chunks(job: dict) -> int | None:
    """A chunk count anywhere in the job object (`chunks`, `progress.chunks_written`...)."""
    stack: list = [job]
    for _ in range(1000):
        if not stack:
            break
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if (
                    "chunk" in str(key).lower()
                    and isinstance(value, int)
                    and not isinstance(value, bool)
                ):
                    return value
                if isinstance(value, (dict, list)):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(x for x in item if isinstance(x, (dict, list)))
    return None


def healthz(url: str) -> dict:
    with contextlib.suppress(Exception), new_http(10) as http:
        return http.get(f"{url}/healthz").json()
    return {}


def upload(url: str, path: Path) -> dict:
    with new_http(300) as http, path.open("rb") as fh:
        try:
            r = http.post(
                f"{url}/api/documents",
                files=[("files", (path.name, fh, "application/x-ndjson"))],
                data={"kb": KB},
            )
        except httpx.HTTPError as exc:
            raise PhaseError(f"POST /api/documents failed: {describe(exc)}") from None
    if r.status_code in (404, 405):
        raise PhaseError(
            f"the server has no ingest-job API yet: POST /api/documents → {http_error(r)}"
        )
    if not 200 <= r.status_code < 300:
        raise PhaseError(f"POST /api/documents → {http_error(r)}")
    try:
        jobs = r.json()["jobs"]
        job = jobs[0]
        job["id"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise PhaseError(
            f'POST /api/documents → no {{"jobs": [{{"id"…}}]}}: {r.text[:160]}'
        ) from None
    if len(jobs) != 1:
        raise PhaseError(f"POST /api/documents made {len(jobs)} jobs for one file")
    job["http_status"] = r.status_code  # the contract says 202
    return job


class JobWatcher(threading.Thread):
    """Polls GET /api/jobs/{id} every 0.25 s until the job is done or `limit` seconds
    pass; keeps (time, status) for each poll."""

    def __init__(self, url: str, job_id: str, limit: float):
        super().__init__(daemon=True)
        self.url = f"{url}/api/jobs/{job_id}"
        self.limit = limit
        self.timeline: list[tuple[float, str]] = []
        self.last: dict = {}
        self.problem = ""
        self.done = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.limit
        failures = 0
        try:
            with new_http(10) as http:
                for _ in range(int(self.limit / 0.25) + 1):
                    if time.monotonic() > deadline:
                        self.problem = f"the job did not finish within {self.limit:.0f} s"
                        return
                    try:
                        r = http.get(self.url)
                        if r.status_code != 200:
                            raise PhaseError(f"GET /api/jobs/{{id}} → {http_error(r)}")
                        self.last = r.json()
                        status = str(self.last.get("status", ""))
                        failures = 0
                    except (httpx.HTTPError, PhaseError, ValueError, AttributeError) as exc:
                        failures += 1
                        if failures >= 8:
                            self.problem = (
                                str(exc) if isinstance(exc, PhaseError) else describe(exc)
                            )
                            return
                        time.sleep(0.25)
                        continue
                    self.timeline.append((time.perf_counter(), status))
                    if status in JOB_DONE:
                        return
                    time.sleep(0.25)
        finally:
            self.done.set()

    def active_windows(self) -> list[tuple[float, float]]:
        """Spans between a poll that saw reading/embedding and the next that saw otherwise."""
        windows, opened = [], None
        for t, status in self.timeline:
            if status in JOB_ACTIVE and opened is None:
                opened = t
            elif status not in JOB_ACTIVE and opened is not None:
                windows.append((opened, t))
                opened = None
        if opened is not None and self.timeline:
            windows.append((opened, self.timeline[-1][0]))
        return windows


def phase_ingest(
    url: str, work: Path, records: int, clients: int, limit: float, load_seconds: float
) -> dict:
    out: dict = {"records": records, "kb": KB}
    sample = work / "crud-news-sample.jsonl"
    uploaded = write_records(sample, records)
    ids = {str(r["id"]) for r in uploaded}
    question, source_id = probe_question(uploaded)
    before = healthz(url)
    started = time.perf_counter()
    job = upload(url, sample)
    out |= {"job_id": job["id"], "upload_http_status": job["http_status"]}
    watcher = JobWatcher(url, str(job["id"]), limit)
    halt = threading.Event()
    prober = Prober(url, limit + ASK_TIMEOUT)
    watcher.start()
    prober.start()
    calls: list[Call] = []

    def stop_when_done() -> None:
        # Answers are measured while the job runs, for at most `load_seconds`: answers come
        # first, so under full load the job advances slowly; it then finishes unloaded.
        watcher.done.wait(min(limit + 30, load_seconds))
        halt.set()

    threading.Thread(target=stop_when_done, daemon=True).start()
    try:  # clients run until the job ends: a per-client cap far above any real run
        calls = api_clients(url, clients, 1_000_000, limit, halt)
    finally:
        halt.set()
        probe = prober.finish()
        watcher.join(limit)
    ended = time.perf_counter()
    windows = watcher.active_windows()
    during = [c for c in calls if any(a <= c.start and c.end <= b for a, b in windows)]
    probe_during = [p for p in probe if any(a <= p.start and p.end <= b for a, b in windows)]
    row = summarise(f"C api c={clients} + ingest", clients, during, probe_during)
    row["requests_all"] = len(calls)
    row["errors_all"] = sum(not c.ok for c in calls)
    row["error_samples"] = sorted({c.error for c in calls if not c.ok})[:5]
    first_active = windows[0][0] if windows else None
    final_status = watcher.last.get("status")
    out |= {
        "status": final_status,
        "error": watcher.last.get("error") or watcher.problem or None,
        "progress": watcher.last.get("progress"),
        "seconds": round(ended - started, 1),
        "active_seconds": round(sum(b - a for a, b in windows), 1),
        "queued_seconds": round(first_active - started, 1) if first_active else None,
        "chunks": find_chunks(watcher.last),
        "statuses_seen": list(dict.fromkeys(s for _, s in watcher.timeline)),
        "row": row,
    }
    after = healthz(url)
    if isinstance(before.get("chunks"), int) and isinstance(after.get("chunks"), int):
        out["healthz_chunks_delta"] = after["chunks"] - before["chunks"]
    if watcher.problem and final_status not in JOB_DONE:
        raise PhaseError(watcher.problem, out)
    if final_status == "indexed":
        out["search"] = search_check(url, question, source_id, ids)
    return out


def search_check(url: str, question: str, source_id: str, ids: set[str]) -> dict:
    """Ask with kb "bench" a sentence of one upload; a citation must name an uploaded id
    (exactly, or as part of a kb-qualified id)."""
    with new_http() as http:
        call, answer = ask_once(http, url, {"question": question, "kb": KB})
    result = {"question": question, "expected_doc_id": source_id, "ok": False}
    if answer is None:
        result["error"] = call.error
        return result
    cited = [str(c.get("doc_id", "")) for c in answer.get("citations", [])]
    # the record's id as is, or qualified by kb or file ("bench/<id>", "file.jsonl#<id>")
    hits = [d for d in cited if {d, d.rsplit("/", 1)[-1], d.rsplit("#", 1)[-1]} & ids]
    result |= {
        "cited": cited[:10],
        "ok": bool(hits),
        "expected_cited": any(
            source_id in (d, d.rsplit("/", 1)[-1], d.rsplit("#", 1)[-1]) for d in cited
        ),
        "refused": answer.get("refused"),
    }
    return result


# ---------------------------------------------------------------------------- report


def warm_up(url: str, chat: bool) -> None:
    with new_http() as http:
        for question in QUESTIONS:  # the first loads the model
            call, _ = ask_once(http, url, {"question": question})
            if not call.ok:
                raise SetupError(f"warm-up /api/ask failed: {call.error}")
    if chat:
        try:
            session = Chat(url)
        except Exception as exc:
            raise SetupError(
                f"warm-up chat: gradio_client could not connect: {describe(exc)}"
            ) from None
        try:
            call = session.ask(QUESTIONS[0])
            if not call.ok:
                raise SetupError(f"warm-up chat failed: {call.error}")
        finally:
            session.close()


def checks(result: dict) -> list[dict]:
    rows = {r["phase"]: r for r in result["phases"]}
    out = []

    def check(name: str, ok: bool | None, detail: str) -> None:
        out.append({"target": name, "pass": ok, "detail": detail})

    # phase C: every answer of the phase counts, not only those timed during the job
    errs = {
        name: r.get("errors_all", r["errors"]) + (r.get("healthz_errors") or 0)
        for name, r in rows.items()
    }
    missing = [p for p in result.get("phase_errors", {})]
    check(
        "0 errors everywhere",
        all(v == 0 for v in errs.values()) and not missing,
        ", ".join(f"{k}: {v}" for k, v in errs.items())
        + (f"; phases that did not run: {', '.join(missing)}" if missing else ""),
    )
    one, eight = rows.get("A api c=1"), rows.get("A api c=8")
    if one and eight and one["throughput_rps"] and eight["throughput_rps"]:
        ratio = eight["throughput_rps"] / one["throughput_rps"]
        result["ratios"]["throughput_8_over_1"] = round(ratio, 2)
        check(
            "throughput at 8 clients ≥ 1.6 × at 1",
            ratio >= 1.6,
            f"{eight['throughput_rps']} / {one['throughput_rps']} req/s = {ratio:.2f}×",
        )
    else:
        check("throughput at 8 clients ≥ 1.6 × at 1", None, "phase A did not run")
    loaded = {k: r.get("healthz_p95_ms") for k, r in rows.items() if r["clients"] > 1}
    measured = {k: v for k, v in loaded.items() if v is not None}
    check(
        "/healthz p95 < 100 ms under load",
        all(v < 100 for v in measured.values()) if measured else None,
        ", ".join(f"{k}: {v} ms" for k, v in measured.items()) or "no loaded phase ran",
    )
    job = result.get("ingest_job") or {}
    during = rows.get(next((k for k in rows if k.startswith("C ")), ""), {})
    if eight and eight["p95_ms"] and during.get("p95_ms"):
        ratio = during["p95_ms"] / eight["p95_ms"]
        result["ratios"]["p95_during_ingest_over_without"] = round(ratio, 2)
        check(
            "answer p95 during ingest ≤ 3 × without",
            ratio <= 3,
            f"{during['p95_ms']} / {eight['p95_ms']} ms = {ratio:.2f}×",
        )
    else:
        why = result.get("phase_errors", {}).get("C") or (
            "no answer completed while the job was reading/embedding"
            if job
            else "phase C did not run"
        )
        check(
            "answer p95 during ingest ≤ 3 × without",
            None if "C" not in result["phases_run"] else False,
            why,
        )
    if "C" in result["phases_run"]:
        search = job.get("search") or {}
        detail = (
            f"job {job.get('status')}, cited {search.get('cited', [])[:3]}"
            if search
            else result.get("phase_errors", {}).get("C")
            or f"job {job.get('status')}: {job.get('error')}"
        )
        check("uploaded documents are searchable (kb bench)", bool(search.get("ok")), detail)
    return out


def render(result: dict, stream) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=stream, width=150)
    table = Table(title="rag serve under concurrent clients")
    for col in (
        "phase",
        "clients",
        "requests",
        "errors",
        "req/s",
        "p50 ms",
        "p95 ms",
        "max ms",
        "/healthz p50",
        "/healthz p95",
        "healthz errors",
    ):
        table.add_column(col, justify="left" if col == "phase" else "right")
    for r in result["phases"]:
        table.add_row(
            r["phase"],
            str(r["clients"]),
            str(r["requests"]),
            str(r["errors"]),
            *(
                str(r.get(k, "")) if r.get(k) is not None else "–"
                for k in (
                    "throughput_rps",
                    "p50_ms",
                    "p95_ms",
                    "max_ms",
                    "healthz_p50_ms",
                    "healthz_p95_ms",
                    "healthz_errors",
                )
            ),
        )
    console.print(table)
    for name, message in result.get("phase_errors", {}).items():
        console.print(f"phase {name}: [bold red]did not run[/]: {message}")
    samples = {r["phase"]: r["error_samples"] for r in result["phases"] if r.get("error_samples")}
    for name, errs in samples.items():
        console.print(f"{name} errors: {'; '.join(errs)}")
    job = result.get("ingest_job")
    if job:
        console.print(
            f"ingest job: {job.get('records')} records → status {job.get('status')}, "
            f"{job.get('seconds')} s in all ({job.get('active_seconds')} s reading/embedding), "
            f"chunks {job.get('chunks')} (healthz Δ {job.get('healthz_chunks_delta')}), "
            f"answers measured during it: {job.get('row', {}).get('requests')}"
            + (
                f", {'note' if job.get('status') == 'indexed' else 'error'}: {job['error']}"
                if job.get("error")
                else ""
            )
        )
    log = result.get("server_log", {})
    if log.get("tracebacks") or log.get("error_lines") or log.get("non_2xx_access_lines"):
        console.print(
            f"server log: {log.get('tracebacks')} tracebacks, "
            f"non-2xx responses {log.get('non_2xx_access_lines')}"
        )
        for line in log.get("error_samples", [])[:5]:
            console.print(f"  {line}", markup=False)
    if result.get("loadavg_start", [0])[0] > 1:  # before this run started anything
        console.print(
            f"[yellow]note[/]: load average {result['loadavg_start']} before the run started: "
            "other work was using the CPUs; figures are not comparable to a quiet machine"
        )
    for c in result["checks"]:
        mark = {True: "[green]PASS[/]", False: "[red]FAIL[/]", None: "[yellow]N/A [/]"}[c["pass"]]
        console.print(f"{mark} {c['target']}: {c['detail']}")


# ---------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and records")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object at the end (table → stderr)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="save the JSON here (default bench/results/concurrency[-quick].json)",
    )
    parser.add_argument("--phases", default="A,B,C", help="which of A,B,C to run (default all)")
    parser.add_argument(
        "--records",
        type=int,
        help="crud-news records to upload in phase C (default 2000, quick 200)",
    )
    parser.add_argument(
        "--job-timeout",
        type=float,
        default=3600,
        help="seconds phase C waits for the job (default 3600)",
    )
    parser.add_argument(
        "--load-seconds",
        type=float,
        default=180,
        help="seconds phase C keeps its clients asking while the job runs (default 180)",
    )
    parser.add_argument(
        "--chat-questions", type=int, help="questions per chat session (default 6, quick 3)"
    )
    args = parser.parse_args()
    phases = {p.strip().upper() for p in args.phases.split(",") if p.strip()}
    if not phases <= {"A", "B", "C"}:
        parser.error("--phases takes A, B and C")
    records = args.records or (200 if args.quick else 2000)
    chat_questions = args.chat_questions or (3 if args.quick else 6)
    out_path = args.out or REPO / "bench" / "results" / (
        "concurrency-quick.json" if args.quick else "concurrency.json"
    )
    human = sys.stderr if args.json else sys.stdout
    say = lambda *a: print(*a, file=human, flush=True)  # noqa: E731

    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    try:
        work = Path(tempfile.mkdtemp(prefix="bench-concurrency-"))
    except OSError as exc:
        print(f"concurrency: setup failed: no temporary folder: {exc}", file=sys.stderr)
        return 2
    server = Server(work, say)
    result: dict = {
        "quick": args.quick,
        "phases_run": sorted(phases),
        "questions": len(QUESTIONS),
        "cpus": os.cpu_count(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "phases": [],
        "ratios": {},
        "phase_errors": {},
    }
    try:
        say(f"indexing a copy of corpus/ into {work / 'data'} …")
        result["setup_ingest_s"] = round(server.prepare(), 1)
        result["server_start_s"] = round(server.start(), 1)
        say(f"rag serve at {server.url} (ready in {result['server_start_s']} s); warming up …")
        warm_up(server.url, "B" in phases)
        result["healthz"] = healthz(server.url)

        if "A" in phases:
            limit = 90 if args.quick else 180
            for clients in (1, 8, 32):
                total = max(40, 10 * clients) if args.quick else max(600, min(150 * clients, 1600))
                say(f"phase A: {clients} API client(s), {total} requests …")
                result["phases"].append(phase_api(server.url, clients, total, limit))
        if "B" in phases:
            limit = 180 if args.quick else 300
            for sessions in (1, 8):
                say(f"phase B: {sessions} chat session(s), {chat_questions} questions each …")
                try:
                    result["phases"].append(phase_chat(server.url, sessions, chat_questions, limit))
                except PhaseError as exc:
                    result["phase_errors"]["B"] = str(exc)
                    break
        if "C" in phases:
            say(f"phase C: 8 API clients while the server indexes {records} crud-news records …")
            try:
                job = phase_ingest(
                    server.url, work, records, 8, args.job_timeout, args.load_seconds
                )
                result["ingest_job"] = job
                result["phases"].append(job["row"])
            except PhaseError as exc:
                result["phase_errors"]["C"] = str(exc.args[0])
                if len(exc.args) > 1:
                    result["ingest_job"] = exc.args[1]
                    result["phases"].append(exc.args[1]["row"])
    except SetupError as exc:
        print(f"concurrency: setup failed: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("concurrency: interrupted; stopping the server, removing temp files", file=sys.stderr)
        return 130
    finally:
        server.stop()
        result["server_log"] = server.log_findings()
        shutil.rmtree(work, ignore_errors=True)

    result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    result["checks"] = checks(result)
    render(result, human)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, ensure_ascii=False, indent=2), "utf-8")
    say(f"saved {out_path}")
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
