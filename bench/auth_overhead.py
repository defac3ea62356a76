"""What signing callers in costs an answer: `POST /api/ask` latency with sign-in on, as a
ratio to the same questions with `RAG_AUTH=none`, in one process and one run.

Usage: .venv/bin/python bench/auth_overhead.py [--rounds N] [--json]

`corpus/` is indexed once into a temporary data dir in two knowledge bases (政策: the
policies, 内部资料: the news). The same assistant is then served by uvicorn on loopback
four ways, each asked the same questions in a closed loop by 4 clients:

  none     RAG_AUTH=none: the baseline
  header   a proxy user with a grant on every knowledge base, the audit log on
  key      an API key (hashed lookup in SQLite), the audit log and rate limit on
  reader   a proxy user granted 政策 only: the grant narrows both retrievers

Reported: p50 and p95 per way and their ratio to `none`. Timings share the CPU with the
server (2 cores here), so run it on an idle machine.
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
from rag.api.auth import AuthConfig  # noqa: E402
from rag.audit import AuditLog  # noqa: E402
from rag.chain import build_assistant  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.embed import LazyEmbeddings  # noqa: E402
from rag.index import Index  # noqa: E402
from rag.ingest import ingest  # noqa: E402
from rag.keys import KeyStore  # noqa: E402

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
        results = {}
        for name, (app, headers) in ways.items():
            server, url = serve(app)
            measure(url, headers, 3, clients=1)  # warm-up
            took = sorted(measure(url, headers, args.rounds))
            server.should_exit = True
            results[name] = {
                "p50_ms": round(statistics.median(took), 1),
                "p95_ms": round(took[int(0.95 * (len(took) - 1))], 1),
                "requests": len(took),
            }
        base = results["none"]
        for row in results.values():
            row["p50_ratio"] = round(row["p50_ms"] / base["p50_ms"], 3)
            row["p95_ratio"] = round(row["p95_ms"] / base["p95_ms"], 3)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'way':8} {'p50 ms':>8} {'p95 ms':>8} {'p50×':>6} {'p95×':>6}")
    for name, row in results.items():
        print(
            f"{name:8} {row['p50_ms']:8.1f} {row['p95_ms']:8.1f}"
            f" {row['p50_ratio']:6.2f} {row['p95_ratio']:6.2f}"
        )


if __name__ == "__main__":
    main()
