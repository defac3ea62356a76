"""What signing callers in costs an answer: `POST /api/ask` latency with sign-in on, as a
ratio to the same questions with `RAG_AUTH=none`, in one process and one run.

Usage: .venv/bin/python bench/auth_overhead.py [--rounds N] [--json]

`corpus/` is indexed once into a temporary data dir in two knowledge bases (政策: the
policies, 内部资料: the news). The same assistant is then served by uvicorn on loopback
four ways at once, each asked the same questions in a closed loop by 4 clients, in
turns of one batch each (order rotated):

  none     RAG_AUTH=none: the baseline
  header   a proxy user with a grant on every knowledge base, the audit log on
  key      an API key (hashed lookup in SQLite), the audit log and rate limit on
  reader   a proxy user granted 政策 only: the grant narrows both retrievers

Reported: p50 and p95 per way and their ratio to `none`, and the time the sign-in layer
alone spends on a request (no HTTP, no answer). Timings share the CPU with the server
(2 cores here), so run it on an idle machine; between runs the ratios move by ±0.1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import uvicorn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rag import e5_bundle  # noqa: E402
from rag.access import Grants, Role  # noqa: E402
from rag.api import create_app  # noqa: E402
from rag.api.auth import AuthConfig, Authenticate  # noqa: E402
from rag.audit import AuditLog  # noqa: E402
from rag.chain import build_assistant  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.embed import LazyEmbeddings  # noqa: E402
from rag.index import Index  # noqa: E402
from rag.ingest import ingest  # noqa: E402
from rag.keys import KeyStore  # noqa: E402

BATCHES = 6
QUESTIONS = [
    "在明川区写字楼租办公室，第一年租金补贴多少？",
    "飞地项目投产后前三年按多大比例奖励？",
    "招商项目评审打分看哪些方面？",
    "新设外资企业当年到资500万美元以上怎么奖励？",
    "重大项目全生命周期分为哪几个阶段？",
    "莱芜区上半年实际使用外资多少？",
]
GRANTS = '[users."all"]\nrole = "reader"\n\n[users."policy"]\nrole = "reader"\nkbs = ["政策"]\n'


def serve(app) -> tuple[uvicorn.Server, str]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


def measure(url: str, headers: dict, rounds: int, clients: int = 4) -> list[float]:
    def one_client(_: int) -> list[float]:
        took = []
        with httpx.Client(base_url=url, headers=headers, timeout=60) as api:
            for i in range(rounds):
                question = QUESTIONS[i % len(QUESTIONS)]
                start = time.perf_counter()
                response = api.post("/api/ask", json={"question": question})
                took.append((time.perf_counter() - start) * 1000)
                response.raise_for_status()
        return took

    with ThreadPoolExecutor(clients) as pool:
        return [ms for took in pool.map(one_client, range(clients)) for ms in took]


def layer_alone(auth: AuthConfig, headers: dict, n: int = 2000) -> float:
    """Milliseconds the sign-in layer itself spends on one request (principal, origin
    and rate checks), without HTTP or an answer."""
    layer = Authenticate(None, auth)
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    start = time.perf_counter()
    for _ in range(n):
        scope = {"type": "http", "method": "POST", "path": "/api/ask", "headers": raw,
                 "client": ("127.0.0.1", 1), "state": {}}  # fmt: skip
        sent = dict(raw)
        principal = layer.principal(scope, sent)
        layer.check_origin(principal, scope, sent)
        layer.check_rate(principal, scope)
    return (time.perf_counter() - start) / n * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="questions per client per way")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = e5_bundle.materialise(work / "model")
        index = Index(work / "data", "corpus", LazyEmbeddings(str(model), work / "data"))
        ingest([REPO / "corpus" / "policies"], index, 300, 60, kb="政策")
        ingest([REPO / "corpus" / "news"], index, 300, 60, kb="内部资料")
        assistant = build_assistant(Settings(), index)
        (work / "grants.toml").write_text(GRANTS, "utf-8")
        keys = KeyStore(work / "keys.sqlite")
        _, secret = keys.create("bench", Role.READER, rate="100000/minute")
        signed_in = AuthConfig(
            mode="header", grants=Grants(work / "grants.toml"), keys=keys, rate="100000/minute"
        )
        ways = {
            "none": (create_app(lambda: assistant), {}),
            "header": (
                create_app(lambda: assistant, auth=signed_in, audit=AuditLog(work / "a.sqlite")),
                {"X-Remote-User": "all"},
            ),
            "key": (
                create_app(lambda: assistant, auth=signed_in, audit=AuditLog(work / "b.sqlite")),
                {"Authorization": f"Bearer {secret}"},
            ),
            "reader": (
                create_app(lambda: assistant, auth=signed_in, audit=AuditLog(work / "c.sqlite")),
                {"X-Remote-User": "policy"},
            ),
        }
        # All four served at once and measured in turns, a batch each, the order
        # rotated: a slow spell of the machine falls on every way alike.
        servers = {name: serve(app) for name, (app, _) in ways.items()}
        took: dict[str, list[float]] = {name: [] for name in ways}
        for name, (_, url) in servers.items():
            measure(url, ways[name][1], 3, clients=1)  # warm-up
        names = list(ways)
        for batch in range(BATCHES):
            for name in names[batch % len(names) :] + names[: batch % len(names)]:
                url = servers[name][1]
                took[name] += measure(url, ways[name][1], max(1, args.rounds // BATCHES))
        for server, _ in servers.values():
            server.should_exit = True
        results = {}
        for name, times in took.items():
            times.sort()
            results[name] = {
                "p50_ms": round(statistics.median(times), 1),
                "p95_ms": round(times[int(0.95 * (len(times) - 1))], 1),
                "requests": len(times),
            }
        for name in ("header", "key"):
            results[name]["layer_ms"] = round(layer_alone(signed_in, ways[name][1]), 3)
        base = results["none"]
        for row in results.values():
            row["p50_ratio"] = round(row["p50_ms"] / base["p50_ms"], 3)
            row["p95_ratio"] = round(row["p95_ms"] / base["p95_ms"], 3)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'way':8} {'p50 ms':>8} {'p95 ms':>8} {'p50×':>6} {'p95×':>6} {'layer ms':>9}")
    for name, row in results.items():
        print(
            f"{name:8} {row['p50_ms']:8.1f} {row['p95_ms']:8.1f}"
            f" {row['p50_ratio']:6.2f} {row['p95_ratio']:6.2f} {row.get('layer_ms', ''):>9}"
        )


if __name__ == "__main__":
    main()
