"""What an operator sees: one log line per request (key=value), and Prometheus metrics.

Never logged: question or document text, keys. A route sets what it knows about the
request (knowledge bases, refused, fallback reason) on `request.state.log`, and the
middleware writes it in the request's one line.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger("rag.request")

_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def configure_logging(level: int = logging.INFO) -> None:
    """Logs to stderr (the journal, under systemd), one line per event."""
    root = logging.getLogger("rag")
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        root.addHandler(handler)
    root.setLevel(level)


def kv(fields: dict) -> str:
    """`key=value` pairs; values with blanks, quotes or control characters are quoted,
    and a control character is written as an escape: a newline in a file name must not
    start a line of its own (a forged log line) or cut this one."""
    parts = []
    for key, value in fields.items():
        text = str(value)
        if not text or any(c in text for c in ' "=\\') or _CONTROL.search(text):
            text = text.replace("\\", "\\\\").replace('"', '\\"')
            text = '"' + _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text) + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def answer_fields(answer: dict, fallback: str = "") -> dict:
    """What a log line says about an answer (the `rag ask --json` object): never its text."""
    fields = {
        "refused": answer["refused"],
        "citations": len(answer["citations"]),
        "gen": answer.get("generation", ""),
        "ms_answer": answer["timings_ms"].get("total_ms", 0),
    }
    if fallback:
        fields["fallback"] = fallback
    return fields


class _StateCollector:
    """Gauges read at scrape time: documents and chunks per knowledge base, jobs by state."""

    def __init__(self, kbs: Callable[[], list[tuple[str, int, int]]], jobs: Callable[[], dict]):
        self._kbs = kbs
        self._jobs = jobs

    def collect(self):
        docs = GaugeMetricFamily("rag_documents", "Documents indexed", labels=["kb"])
        chunks = GaugeMetricFamily("rag_chunks", "Chunks indexed", labels=["kb"])
        for kb, n_docs, n_chunks in self._kbs():
            docs.add_metric([kb], n_docs)
            chunks.add_metric([kb], n_chunks)
        jobs = GaugeMetricFamily("rag_ingest_jobs", "Ingest jobs by state", labels=["state"])
        for state, n in self._jobs().items():
            jobs.add_metric([state], n)
        yield docs
        yield chunks
        yield jobs


class Telemetry:
    """The metrics of one app (its own registry: two apps in one process don't clash)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rag_requests", "HTTP requests", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "rag_request_duration_seconds",
            "HTTP request latency",
            ["route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "rag_llm_fallbacks", "LLM answers replaced by extractive ones", registry=self.registry
        )

    def watch(
        self, kbs: Callable[[], list[tuple[str, int, int]]], jobs: Callable[[], dict]
    ) -> None:
        self.registry.register(_StateCollector(kbs, jobs))

    def observe(self, method: str, route: str, status: int, started: float, extra: dict) -> None:
        seconds = time.perf_counter() - started
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        if extra.get("fallback"):
            self.fallbacks.inc()
        log.info(
            kv(
                {
                    "method": method,
                    "route": route,
                    "status": status,
                    "ms": round(seconds * 1000, 1),
                    **extra,
                }
            )
        )
