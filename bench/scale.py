"""What an index of N chunks costs: write rate, size on disk, server memory, answer latency
and a one-document ingest, at N = 10,000 and 100,000 chunks (1,000,000 allowed).

Usage: .venv/bin/python bench/scale.py [--sizes 10000,100000] [--work /tmp/scale-bench]
       [--benchmarks ../shared/benchmarks] [--out bench/results/scale.json]

MOST OF THE N CHUNKS ARE NOT EMBEDDED BY THE MODEL. On 2 cores the model embeds 40–50
chunks/s, so 100,000 chunks would take 35–45 minutes a size. Instead:

1. A real sample (--sample-chunks, default 3,000) is read, cleaned and split by the product
   (rag.load, rag.ingest.make_chunks): every gold passage of rgb-dev's questions, more RGB
   passages, then CRUD-news records. It is embedded once with the real model and default
   backend (`LazyEmbeddings.embed_chunks` in the writer's batches of 128: chunk vectors and
   in-context sentence vectors); its chunks/s is the model's encode rate reported here.
   Cached in the work dir (the cache says when the rate was measured).
2. Rows beyond the sample are synthetic: documents of ~10 chunks that recombine runs of
   sentences of several real passages of one set, with numbers and dates varied. A
   sentence's vector is the real in-context vector of the sentence it came from plus
   Gaussian noise (--noise per dimension, re-normalised); a chunk's vector is the
   length-weighted mean of its sentence vectors plus noise, re-normalised.
3. Real and synthetic rows go through the product's own writer (rag.index.Index,
   Writer.put, committing when Writer.commit_due says so, as `rag ingest` does) into the
   collection `rag serve` opens by default, in a child process whose peak RSS is its own.
   Its embeddings object hands back the vectors above instead of running the model (it has
   the real model's name, so the server accepts the index): WRITE RATES EXCLUDE THE MODEL.

Then, on each data dir, with the real product and the real model:
- `rag ingest` of a folder holding one new ~3,000-character document (4 CRUD-news records
  not in the sample), as a subprocess, before the server starts (the server owns an
  embedded store: `rag ingest` beside it is refused, which is checked and reported too);
- `rag serve` as a subprocess: time to ready, VmRSS / VmHWM after warm-up, after the
  questions and after an upload; `POST /api/ask` one question at a time over HTTP (rgb-dev's
  questions, then questions made from sample sentences by replacing a figure with 多少);
- the same kind of document uploaded to the running server (`POST /api/documents`, the
  way to add a document while it runs): time until the job is indexed, then the time of the
  first answer about it and whether it cites it.

Every timed phase first waits (--quiet-wait) for 10 s in which other processes use under
1 CPU second, and records how many CPU seconds other processes used while it ran
(`other_processes_cpu_s`): on 2 cores, anyone else's work skews the figures.

Benchmark data is read from --benchmarks and never copied into the repository; data dirs
live under --work.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import concurrency  # bench/concurrency.py: its `rag serve` plumbing is reused here
import httpx
import numpy as np
from concurrency import HOST, rag_command

REPO = Path(__file__).resolve().parents[1]
SAMPLE_VERSION = 1  # bump when the sample's selection or layout changes
TARGETS = {"p95_ms": 300.0, "server_rss_mib": 3 * 1024, "ingest_seconds": 10.0}
_DIGITS = re.compile(r"\d+")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_ENDS = tuple("。！？；!?;…")
# A figure a question can ask for: the number is replaced by 多少.
_FIGURE = re.compile(
    r"\d+(?:\.\d+)?(?=(?:万|亿)?(?:元|美元|人|家|个|项|吨|公里|亩|户|辆|%|％|倍|次|台|件))"
)


def log(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def rss_mib(pid: int | str = "self") -> dict[str, float]:
    """VmRSS and VmHWM of a process, MiB."""
    out = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


_TICK = os.sysconf("SC_CLK_TCK")


def busy_seconds() -> float:
    """CPU seconds every process on the machine has used (from /proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICK


def process_seconds(pid: int) -> float:
    """CPU seconds a live process has used (utime + stime)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(stat[11]) + int(stat[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return 0.0


class OtherCpu:
    """CPU seconds used by processes other than this one, its reaped children and `pids`
    while a phase ran: above a few seconds, someone else's work skewed the figures."""

    def __init__(self, pids: tuple[int, ...] = ()):
        self.pids = pids
        self.start = self._ours(), busy_seconds()

    def _ours(self) -> float:
        t = os.times()
        return (
            t.user
            + t.system
            + t.children_user
            + t.children_system
            + sum(process_seconds(p) for p in self.pids)
        )

    def seconds(self) -> float:
        ours, busy = self._ours(), busy_seconds()
        return round(max(0.0, (busy - self.start[1]) - (ours - self.start[0])), 1)


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    return round(float(np.percentile(np.asarray(values), p)), 1)


def clean_env(data_dir: Path) -> dict[str, str]:
    """The caller's RAG_* settings stay out: every process here uses the defaults."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    return base | {
        "RAG_DATA_DIR": str(data_dir),
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "NO_PROXY": HOST,
    }


def disk_mib(path: Path) -> float:
    """Allocated size of a file or folder, as du counts it."""
    if not path.exists():
        return 0.0
    paths = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return round(sum(p.stat().st_blocks * 512 for p in paths) / 2**20, 1)


# ------------------------------------------------------------------------------- sample


@dataclass
class RealDoc:
    doc_id: str
    set: str  # "rgb" or "crud"
    origin: str  # the file it was read from, as `rag ingest FILE` records it
    raw_hash: str
    text: str
    meta: dict

    def document(self):
        from rag.types import Document

        return Document(self.doc_id, self.text, dict(self.meta))


def read_records(path: Path) -> Iterator[tuple[str, str, object]]:
    """(doc_id, raw_hash, Source) of a JSONL file, read by the product's loader."""
    from rag.load import Source, iter_sources

    for item in iter_sources(path):
        if isinstance(item, Source):
            yield item.doc_id, item.raw_hash, item


def select_sample(bench: Path, target: int, rgb_share: float, size: int, overlap: int):
    """Real documents up to `target` chunks (RGB's gold passages first), the reserve of
    unsampled CRUD-news records for new documents, and rgb-dev's questions."""
    from rag.ingest import make_chunks
    from rag.load import UnreadableError

    questions = [
        json.loads(line)
        for line in (bench / "rgb-dev" / "questions.jsonl").read_text("utf-8").splitlines()
        if line.strip()
    ]
    gold = {d for q in questions for d in q["gold_docs"]}
    seen_text: set[str] = set()

    def load(path: Path, set_name: str, wanted: Callable[[str], bool], budget: int):
        docs, chunks, rest = [], 0, []
        for doc_id, raw, source in read_records(path):
            if not wanted(doc_id) or chunks >= budget:
                rest.append(source)
                continue
            try:
                doc = source.load()
            except UnreadableError:
                continue
            if doc.content_hash in seen_text:
                continue
            seen_text.add(doc.content_hash)
            docs.append(
                RealDoc(doc_id, set_name, str(path.resolve()), raw, doc.text, dict(doc.meta))
            )
            chunks += len(make_chunks(doc, size, overlap))
        return docs, chunks, rest

    rgb_path = bench / "rgb-dev" / "docs.jsonl"
    rgb_budget = int(target * rgb_share)
    rgb, rgb_chunks, _ = load(rgb_path, "rgb", lambda d: d in gold, rgb_budget)
    more, more_chunks, _ = load(rgb_path, "rgb", lambda d: d not in gold, rgb_budget - rgb_chunks)
    crud_path = bench / "crud-news" / "docs.jsonl.gz"
    crud, _, rest = load(crud_path, "crud", lambda d: True, target - rgb_chunks - more_chunks)
    return rgb + more + crud, rest, questions


def new_document(sources, count: int = 4, limit: int = 3200) -> tuple[str, str]:
    """(title, text) of ~3,000 characters from `count` CRUD-news records nobody indexed."""
    texts = []
    for source in sources:
        doc = source.load()
        texts.append(doc.text.strip())
        if len(texts) == count:
            break
    text = "\n".join(texts)
    if len(text) > limit:
        cut = max(text.rfind(end, 0, limit) for end in _ENDS)
        text = text[: cut + 1 if cut > limit // 2 else limit]
    first = re.split(r"[。！？\n]", texts[0].split("正文：")[-1])[0]
    return f"新闻汇编：{first[:24]}", text


def figure_question(sentence: str) -> tuple[str, str] | None:
    """("…多少万元？", the figure) from a sentence that states a figure, else None."""
    sentence = sentence.strip().rstrip("。！？；;!?…")
    if not 14 <= len(sentence) <= 70 or sentence.count("，") > 3:
        return None
    found = _FIGURE.search(sentence)
    if not found:
        return None
    start = max(0, sentence.rfind("，", 0, found.start()) + 1)
    question = sentence[start : found.start()] + "多少" + sentence[found.end() :]
    if len(question) < 10:
        question = sentence[: found.start()] + "多少" + sentence[found.end() :]
    return question.strip("，、 ") + "？", found.group()


def questions_from(texts: list[tuple[str, str]], rng: np.random.Generator, n: int):
    """`n` figure questions, one per document: [(question, doc_id, figure)]."""
    from rag.split import split_sentences

    out = []
    order = rng.permutation(len(texts))
    for i in order:
        doc_id, text = texts[i]
        made = [q for s in split_sentences(text) if (q := figure_question(s))]
        if made:
            question, figure = made[int(rng.integers(len(made)))]
            out.append((question, doc_id, figure))
        if len(out) == n:
            break
    return out


def embed_sample(docs: list[RealDoc], settings, model_home: Path) -> dict:
    """Embed the sample's chunks with the real model; returns arrays and the measurement."""
    from rag.embed import LazyEmbeddings
    from rag.index import EMBED_BATCH
    from rag.ingest import make_chunks
    from rag.split import sentence_spans, with_title

    texts, spans = [], []
    for doc in docs:
        for chunk in make_chunks(doc.document(), settings.chunk_size, settings.chunk_overlap):
            framed, at = with_title(chunk.text, chunk.meta.get("title", ""))
            texts.append(framed)
            spans.append([(s.start + at, s.end + at) for s in sentence_spans(chunk.text)])
    embeddings = LazyEmbeddings(
        settings.embedding_model,
        model_home,
        query_prefix=settings.query_prefix,
        passage_prefix=settings.passage_prefix,
        batch_size=settings.embed_batch_size,
        backend=settings.embed_backend,
    )
    started = time.perf_counter()
    embeddings.embed_query("预热")
    load_seconds = time.perf_counter() - started
    vectors, sentence_vectors = [], []
    others = OtherCpu()
    started = time.perf_counter()
    for i in range(0, len(texts), EMBED_BATCH):
        v, sv = embeddings.embed_chunks(texts[i : i + EMBED_BATCH], spans[i : i + EMBED_BATCH])
        vectors.append(v)
        sentence_vectors.extend(sv)
        log(f"  embedded {min(i + EMBED_BATCH, len(texts))}/{len(texts)} sample chunks")
    seconds = time.perf_counter() - started
    counts = np.asarray([len(s) for s in spans], dtype=np.int32)
    assert all(len(sv) == c for sv, c in zip(sentence_vectors, counts, strict=True))
    return {
        "vectors": np.concatenate(vectors).astype(np.float32),
        "sentence_vectors": np.concatenate(
            [sv.reshape(-1, vectors[0].shape[1]) for sv in sentence_vectors]
        ).astype(np.float16),
        "counts": counts,
        "measure": {
            "model": settings.embedding_model,
            "backend": settings.embed_backend,
            "chunks": len(texts),
            "sentences": int(counts.sum()),
            "characters": sum(len(t) for t in texts),
            "model_load_seconds": round(load_seconds, 1),
            "encode_seconds": round(seconds, 1),
            "encode_chunks_per_s": round(len(texts) / seconds, 2),
            "batch": EMBED_BATCH,
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "peak_rss_mib_while_embedding": rss_mib().get("VmHWM"),
            "other_processes_cpu_s": others.seconds(),
        },
    }


def prepare_sample(args, settings, model_home: Path) -> tuple[Path, dict]:
    """The sample folder (docs, vectors, questions, new documents), made once per key."""
    key = {
        "version": SAMPLE_VERSION,
        "target": args.sample_chunks,
        "rgb_share": args.rgb_share,
        "seed": args.seed,
        "model": settings.embedding_model,
        "backend": settings.embed_backend,
        "chunking": [settings.chunk_size, settings.chunk_overlap],
        "benchmarks": str(args.benchmarks.resolve()),
    }
    folder = args.work / "sample"
    meta_path = folder / "meta.json"
    if not args.fresh_sample and meta_path.is_file():
        meta = json.loads(meta_path.read_text("utf-8"))
        if meta.get("key") == key:
            log(
                f"sample: cached in {folder} (encode rate measured {meta['measure']['measured_at']})"
            )
            return folder, meta
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    quiet = wait_quiet(args.quiet_wait)
    log(f"sample: reading and splitting real passages ({quiet})")
    docs, rest, rgb_questions = select_sample(
        args.benchmarks,
        args.sample_chunks,
        args.rgb_share,
        settings.chunk_size,
        settings.chunk_overlap,
    )
    log(f"sample: {len(docs)} documents; embedding with the real model")
    embedded = embed_sample(docs, settings, model_home)
    embedded["measure"]["load_before"] = quiet
    embedded["measure"]["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    np.savez(
        folder / "vectors.npz",
        vectors=embedded["vectors"],
        sentence_vectors=embedded["sentence_vectors"],
        counts=embedded["counts"],
    )
    (folder / "docs.json").write_text(
        json.dumps([vars(d) for d in docs], ensure_ascii=False), "utf-8"
    )
    rng = np.random.default_rng(args.seed)
    crud = [(d.doc_id, d.text) for d in docs if d.set == "crud"]
    made = questions_from(crud, rng, 120)
    reserve = list(reversed(rest))  # the file's last records: far from the sampled ones
    new_docs = [new_document(reserve[i * 4 : i * 4 + 4]) for i in range(4)]
    new = []
    for title, text in new_docs:
        asked = questions_from([("new", text)], rng, 1)
        if not asked:
            sys.exit("a new document without a sentence stating a figure; change --seed")
        new.append({"title": title, "text": text, "question": asked[0][0], "figure": asked[0][2]})
    meta = {
        "key": key,
        "measure": embedded["measure"],
        "documents": len(docs),
        "documents_by_set": {s: sum(d.set == s for d in docs) for s in ("rgb", "crud")},
        "rgb_questions": [
            {"question": q["question"], "gold_docs": q["gold_docs"], "answers": q["answers"]}
            for q in rgb_questions
        ],
        "made_questions": [{"question": q, "doc_id": d, "figure": f} for q, d, f in made],
        "new_documents": new,
    }
    meta_path.write_text(json.dumps(meta, ensure_ascii=False, indent=1), "utf-8")
    return folder, meta


# ------------------------------------------------------------------- vectors without the model


def masked(sentence: str) -> str:
    return _DIGITS.sub("#", sentence.strip())


def normalise(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.clip(norm, 1e-12, None)


class SampleVectors:
    """The real sample's vectors, by chunk text and by sentence (digits masked)."""

    def __init__(self, folder: Path, settings):
        from rag.ingest import make_chunks
        from rag.split import sentence_spans, with_title

        arrays = np.load(folder / "vectors.npz")
        vectors = arrays["vectors"]
        sentence_vectors = arrays["sentence_vectors"]
        counts = arrays["counts"]
        starts = np.concatenate([[0], np.cumsum(counts)])
        self.docs = [RealDoc(**d) for d in json.loads((folder / "docs.json").read_text("utf-8"))]
        self.chunks: list[list] = []  # per document, its chunks
        self.exact: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.rows: dict[str, int] = {}  # masked sentence → row of self.sentence_vectors
        self.sentences: list[list[str]] = []  # per document, its sentences in order
        n = 0
        for doc in self.docs:
            chunks = make_chunks(doc.document(), settings.chunk_size, settings.chunk_overlap)
            self.chunks.append(chunks)
            own: list[str] = []
            for chunk in chunks:
                framed, _ = with_title(chunk.text, chunk.meta.get("title", ""))
                sv = sentence_vectors[starts[n] : starts[n + 1]]
                self.exact[framed] = (vectors[n], sv.astype(np.float32))
                for span, row in zip(
                    sentence_spans(chunk.text), range(starts[n], starts[n + 1]), strict=True
                ):
                    text = chunk.text[span.start : span.end]
                    self.rows.setdefault(masked(text), int(row))
                    if text not in own:
                        own.append(text)
                n += 1
            self.sentences.append(own)
        if n != len(vectors):
            raise RuntimeError(f"the sample has {len(vectors)} vectors for {n} chunks: rebuild it")
        self.sentence_vectors = sentence_vectors.astype(np.float32)
        self.by_set = {
            s: [i for i, d in enumerate(self.docs) if d.set == s and self.sentences[i]]
            for s in ("rgb", "crud")
        }


class PrecomputedEmbeddings:
    """What `Writer` needs of `LazyEmbeddings` (`model`, `backend`, `embed_chunks`), handing
    back the sample's real vectors for real chunks and noisy copies for synthetic ones, so
    that no model runs. `model` is the real model's setting: the manifest records it, and
    `rag serve` then opens the index with the real model."""

    def __init__(self, sample: SampleVectors, model: str, backend: str, prefixes, noise: float):
        self.sample = sample
        self.model = model
        self.backend = backend
        self.query_prefix, self.passage_prefix = prefixes
        self.noise = noise
        self.seconds = 0.0
        self.counts = {"exact_chunks": 0, "noisy_chunks": 0, "sentences": 0, "fallbacks": 0}

    def embed_chunks(self, texts, sentence_spans):
        started = time.perf_counter()
        dim = self.sample.sentence_vectors.shape[1]
        vectors = np.empty((len(texts), dim), dtype=np.float32)
        per_chunk = []
        for i, (text, spans) in enumerate(zip(texts, sentence_spans, strict=True)):
            exact = self.sample.exact.get(text)
            if exact is not None and len(exact[1]) == len(spans):
                vectors[i] = exact[0]
                per_chunk.append(exact[1])
                self.counts["exact_chunks"] += 1
                continue
            self.counts["noisy_chunks"] += 1
            rng = np.random.default_rng(zlib.crc32(text.encode()))
            rows = [self.sample.rows.get(masked(text[a:b])) for a, b in spans]
            if not spans:
                pick = zlib.crc32(text.encode()) % len(self.sample.sentence_vectors)
                base = self.sample.sentence_vectors[[pick]]
            else:
                found = [r for r in rows if r is not None]
                fill = (
                    self.sample.sentence_vectors[found].mean(axis=0)
                    if found
                    else self.sample.sentence_vectors[
                        zlib.crc32(text.encode()) % len(self.sample.sentence_vectors)
                    ]
                )
                base = np.stack(
                    [self.sample.sentence_vectors[r] if r is not None else fill for r in rows]
                )
                self.counts["sentences"] += len(rows)
                self.counts["fallbacks"] += len(rows) - len(found)
            sentences = normalise(base + rng.normal(0, self.noise, base.shape))
            weights = np.asarray([max(b - a, 1) for a, b in spans] or [1], dtype=np.float32)
            chunk = (weights[:, None] * sentences).sum(axis=0) / weights.sum()
            vectors[i] = normalise(chunk + rng.normal(0, self.noise, dim))
            per_chunk.append(
                sentences.astype(np.float32) if spans else np.zeros((0, dim), np.float32)
            )
        self.seconds += time.perf_counter() - started
        return vectors, per_chunk

    # The store hands the index's embeddings to langchain-chroma, which never calls these
    # here (the store queries with vectors); the server runs the real model.
    def embed_documents(self, texts):
        raise RuntimeError("bench embeddings embed no documents")

    def embed_query(self, text):
        raise RuntimeError("bench embeddings embed no questions")


# ------------------------------------------------------------------------ synthetic documents


@dataclass
class Variation:
    year: int
    month: int
    day: int
    scale: float

    def apply(self, text: str) -> str:
        def sub(m: re.Match) -> str:
            s = m.group()
            after = m.string[m.end() : m.end() + 1]
            if "." in s:
                return f"{float(s) * self.scale:.{len(s.split('.')[1])}f}"
            n = int(s)
            if after == "年" and len(s) == 4:
                return str(n + self.year)
            if after == "月" and 1 <= n <= 12:
                return str((n - 1 + self.month) % 12 + 1)
            if after in ("日", "号") and 1 <= n <= 31:
                return str((n - 1 + self.day) % 28 + 1)
            if after in (":", "：") or n < 10:
                return s
            return str(max(10, round(n * self.scale)))

        return _NUMBER.sub(sub, text)


def synthetic_documents(sample: SampleVectors, seed: int, kbs: list[str]):
    """Endless (Document, kb): ~2,300–2,900 characters (~10 chunks) each, runs of sentences
    from several real documents of one set, figures and dates varied."""
    from rag.types import Document

    rng = np.random.default_rng(seed)
    crud_share = sum(len(sample.chunks[i]) for i in sample.by_set["crud"]) / max(
        1, sum(len(c) for c in sample.chunks)
    )
    j = 0
    while True:
        pool = sample.by_set["crud" if rng.random() < crud_share else "rgb"]
        target = int(rng.integers(2300, 2900))
        paragraphs, size, first = [], 0, None
        while size < target:
            d = pool[int(rng.integers(len(pool)))]
            first = d if first is None else first
            own = sample.sentences[d]
            start = int(rng.integers(0, max(1, len(own) - 2)))
            run = own[start : start + int(rng.integers(3, 9))]
            para = "".join(s if s.endswith(_ENDS) else s + "。" for s in run)
            paragraphs.append(para)
            size += len(para) + 1
        vary = Variation(
            year=int(rng.choice([-3, -2, -1, 1, 2, 3])),
            month=int(rng.integers(1, 12)),
            day=int(rng.integers(1, 28)),
            scale=float(rng.choice([0.6, 0.8, 1.25, 1.5, 2.0, 3.0])),
        )
        base = sample.docs[first].meta
        meta = {k: str(base.get(k, "")) for k in base}
        meta["title"] = vary.apply(meta.get("title", ""))
        if meta.get("date"):
            y, rest = meta["date"][:4], meta["date"][4:]
            meta["date"] = f"{int(y) + vary.year:04d}{rest}" if y.isdigit() else meta["date"]
        text = "\n".join(vary.apply(p) for p in paragraphs)
        yield Document(f"scale/{j:07d}", text, meta), kbs[j % len(kbs)]
        j += 1


# --------------------------------------------------------------------------- build (child)


class Stopwatch:
    """Seconds spent in chosen product functions, by wrapping them in this process only."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def wrap(self, owner, name: str, label: str) -> None:
        original = getattr(owner, name, None)
        if original is None:  # rag/ changes under this script: time what is there
            return
        is_class = isinstance(owner.__dict__.get(name), classmethod)
        func = original.__func__ if is_class else original

        def timed(*a, **kw):
            started = time.perf_counter()
            try:
                return func(*a, **kw)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - started
                self.calls[label] = self.calls.get(label, 0) + 1

        setattr(owner, name, classmethod(timed) if is_class else timed)


def build(config: dict) -> None:
    """Write `size` chunks into the data dir through Index + Writer (runs as a child)."""
    from rag.config import Settings
    from rag.embed import default_prefixes
    from rag.index import Index
    from rag.ingest import DEFAULT_KB, doc_entry, make_chunks, settings_key, source_hash
    from rag.lexical import LexicalIndex
    from rag.manifest import Manifest
    from rag.store import Store

    started = time.perf_counter()
    settings = Settings()
    size, progress_path = config["size"], Path(config["progress"])
    sample = SampleVectors(Path(config["sample"]), settings)
    prefixes = default_prefixes(settings.embedding_model)
    prefixes = (
        settings.query_prefix if settings.query_prefix is not None else prefixes[0],
        settings.passage_prefix if settings.passage_prefix is not None else prefixes[1],
    )
    fake = PrecomputedEmbeddings(
        sample, settings.embedding_model, settings.embed_backend, prefixes, config["noise"]
    )
    watch = Stopwatch()
    watch.wrap(Store, "add", "chroma_add")
    watch.wrap(Store, "mark_dead", "chroma_mark_dead")
    watch.wrap(Store, "collect", "chroma_collect")
    watch.wrap(Store, "recover", "chroma_recover")
    watch.wrap(LexicalIndex, "build", "lexical_build")
    watch.wrap(LexicalIndex, "derive", "lexical_derive")
    watch.wrap(LexicalIndex, "save", "lexical_save")
    watch.wrap(Manifest, "publish", "manifest_publish")
    index = Index(settings.data_dir, settings.collection, fake, fresh=True)
    setup = time.perf_counter() - started
    rss_loaded = rss_mib()
    log(f"  build: sample loaded in {setup:.1f} s, RSS {rss_loaded}")

    def documents():
        for doc in sample.docs:
            yield doc.document(), DEFAULT_KB, doc.origin, doc.raw_hash
        for doc, kb in synthetic_documents(sample, config["seed"], config["kbs"]):
            yield doc, kb, "bench-scale:synthetic", hashlib.sha256(doc.text.encode()).hexdigest()

    written = docs = real = 0
    put_s = 0.0
    commits: list[dict] = []
    kbs: dict[str, int] = {}
    write_started = time.perf_counter()
    with index.writer() as writer:
        key = settings_key(index, settings.chunk_size, settings.chunk_overlap)
        for doc, kb, origin, raw in documents():
            if written >= size:
                break
            chunks = make_chunks(doc, settings.chunk_size, settings.chunk_overlap)
            chunks = chunks[: size - written]
            entry = doc_entry(doc, kb, origin, source_hash(raw, key), "")
            t = time.perf_counter()
            writer.put(entry, chunks)
            put_s += time.perf_counter() - t
            written += len(chunks)
            real += len(chunks) if origin != "bench-scale:synthetic" else 0
            docs += 1
            kbs[kb] = kbs.get(kb, 0) + len(chunks)
            if writer.commit_due(settings.commit_chunks):
                t = time.perf_counter()
                gen = writer.commit()
                commits.append(
                    {"gen": gen, "rows": written, "seconds": round(time.perf_counter() - t, 3)}
                )
                elapsed = time.perf_counter() - write_started
                line = {
                    "rows": written,
                    "elapsed_s": round(elapsed, 1),
                    "commit_s": commits[-1]["seconds"],
                    "rss": rss_mib(),
                }
                with progress_path.open("a") as fh:
                    fh.write(json.dumps(line) + "\n")
        t = time.perf_counter()
    last_commit = time.perf_counter() - t  # the writer's own commit at the end of the block
    commits.append({"gen": index.manifest.generation, "rows": written, "seconds": last_commit})
    write_s = time.perf_counter() - write_started
    commit_s = sum(c["seconds"] for c in commits)
    rows = index.store.collection.count()
    one_doc = lexical_one_doc_change(index.lexical_dir(index.manifest.generation))
    documents_n, chunks_n = index.manifest.totals()
    # The writer's own work: put + commit, less the time the bench vectors took in them.
    writer_s = put_s + commit_s - fake.seconds
    result = {
        "chunks": written,
        "real_chunks": real,
        "synthetic_chunks": written - real,
        "documents": docs,
        "chunks_by_kb": kbs,
        "manifest": {"documents": documents_n, "chunks": chunks_n},
        "chroma_rows": rows,
        "collection": index.name,
        "generation": index.manifest.generation,
        "setup_seconds": round(setup, 1),
        "write_seconds": round(write_s, 1),
        "put_seconds": round(put_s, 1),
        "commit_seconds": round(commit_s, 1),
        "commits": len(commits),
        "commit_seconds_first_last": [commits[0]["seconds"], round(commits[-1]["seconds"], 3)],
        "commit_seconds_max": max(c["seconds"] for c in commits),
        "commit_log": commits,
        "bench_vector_seconds": round(fake.seconds, 1),
        "document_making_seconds": round(write_s - put_s - commit_s, 1),
        "writer_seconds_excl_model": round(writer_s, 1),
        "write_chunks_per_s_excl_model": round(written / writer_s, 1),
        "build_chunks_per_s_all_in": round(written / write_s, 1),
        "inside_product_seconds": {k: round(v, 1) for k, v in watch.seconds.items()},
        "inside_product_calls": watch.calls,
        "vectors": fake.counts,
        "lexical_one_doc_change_seconds": one_doc,
        "rss_after_loading_sample_mib": rss_loaded,
        "own_rss_at_end_mib": rss_mib(),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    Path(config["result"]).write_text(json.dumps(result, indent=1), "utf-8")


def lexical_one_doc_change(folder: Path) -> dict:
    """What publishing one more 11-chunk document costs the lexical index of this size:
    load the saved generation, derive the next, save it (what a one-document ingest does)."""
    from rag.lexical import LexicalIndex, LexicalRow

    out = {}
    t = time.perf_counter()
    lexical = LexicalIndex.load(folder)
    out["load"] = round(time.perf_counter() - t, 2)
    if lexical is None or not len(lexical):
        return out
    text = "明川区楼宇经济政策对新落户企业给予三年租金补贴，第一年按实际租金的50%给予补贴。"
    new = [
        LexicalRow(f"bench-new#{i}@0", f"bench-new#{i}", text * 4, {"doc_id": "bench-new"})
        for i in range(11)
    ]
    t = time.perf_counter()
    derived = lexical.derive(set(), new)
    out["derive"] = round(time.perf_counter() - t, 2)
    target = folder.parent / "bench-one-doc-test"
    t = time.perf_counter()
    derived.save(target)
    out["save"] = round(time.perf_counter() - t, 2)
    shutil.rmtree(target, ignore_errors=True)
    return out


# ----------------------------------------------------------------------------- measuring


def run_child(cmd: list[str], env: dict, cwd: Path, timeout: float, out_path: Path) -> dict:
    """Run to the end: wall seconds, exit code, and the child's peak RSS, read from its
    /proc VmHWM every 50 ms. (Not wait4's ru_maxrss: exec carries the high-water mark of
    the mm it replaces — a copy of this process, which holds the model — into the child's.)"""
    started = time.perf_counter()
    others = OtherCpu()
    peak = 0.0
    with out_path.open("w") as out, (out_path.with_suffix(".err")).open("w") as err:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err)
        deadline = time.monotonic() + timeout
        while True:
            peak = max(peak, rss_mib(proc.pid).get("VmHWM", 0.0))
            pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, _ = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "returncode": proc.returncode,
        "wall_seconds": round(time.perf_counter() - started, 2),
        "peak_rss_mib": round(peak),
        "timed_out": time.monotonic() > deadline,
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "other_processes_cpu_s": others.seconds(),
    }


def git_state() -> dict:
    """The commit measured, and whether rag/ differs from it (it changes under this run)."""

    def git(*a: str) -> str:
        done = subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True)
        return done.stdout.strip()

    return {
        "head": git("rev-parse", "--short", "HEAD"),
        "rag_dirty": bool(git("status", "--short", "rag")),
    }


def profile_ingest(folder: Path, env: dict, cwd: Path) -> dict:
    """`rag ingest` under cProfile (slower than the timed run): where its time goes."""
    import pstats

    prof = cwd / "ingest-profile.prof"
    run = run_child(
        [
            sys.executable,
            "-m",
            "cProfile",
            "-o",
            str(prof),
            rag_command(),
            "ingest",
            str(folder),
            "--json",
        ],
        env,
        cwd,
        900,
        cwd / "ingest-profile.out",
    )
    if not prof.is_file():
        return run
    stats = pstats.Stats(str(prof)).stats
    wanted = ("/rag/", "chromadb", "bm25s", "openvino", "onnx_model", "e5_bundle")
    rows = []
    for (path, line, func), (_, _, _, cum, _) in stats.items():
        if any(w in path for w in wanted):
            rows.append(
                (cum, f"{path.split('site-packages/')[-1].split('/work/main/')[-1]}:{line}({func})")
            )
    rows.sort(reverse=True)
    run["top_cumulative_s"] = [[round(c, 2), name] for c, name in rows[:25]]
    return run


def wait_quiet(limit: float, window: float = 10.0, allowed: float = 1.0) -> dict:
    """Wait (at most `limit` s) for a `window` in which other processes use less than
    `allowed` CPU seconds: other work on these 2 cores skews every figure (the load
    average lags by a minute, so it is only recorded). Returns what was seen."""
    started = time.monotonic()
    while True:
        others = OtherCpu()
        time.sleep(window)
        used = others.seconds()
        if used < allowed or time.monotonic() - started >= limit:
            break
    return {
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "other_cpu_s_last_10s": used,
        "waited_s": round(time.monotonic() - started),
        "quiet": used < allowed,
    }


def rag_ingest(folder: Path, env: dict, cwd: Path, name: str) -> dict:
    run = run_child(
        [rag_command(), "ingest", str(folder), "--json"], env, cwd, 900, cwd / f"{name}.out"
    )
    out = (cwd / f"{name}.out").read_text("utf-8").strip()
    err = (cwd / f"{name}.err").read_text("utf-8").strip()
    with contextlib.suppress(ValueError):
        report = json.loads(out.splitlines()[-1]) if out else {}
        run["seconds"] = round(report.get("seconds", 0), 2)
        run["chunks_written"] = report.get("chunks_written")
        run["added"] = report.get("added")
    if run["returncode"] != 0:
        run["message"] = (err or out).splitlines()[-1][:300] if (err or out) else ""
    return run


def write_new_doc(folder: Path, name: str, doc: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"---\ntitle: {doc['title']}\ndate: 2023-09-01\n---\n{doc['text']}\n", "utf-8")
    return path


class Server(concurrency.Server):
    """bench/concurrency.py's `rag serve` on `run_dir`/data (the same environment as
    `clean_env`), waited for until it is ready, not only healthy, and its memory read."""

    def __init__(self, run_dir: Path):
        super().__init__(run_dir, log)

    def start(self, timeout: float = 900) -> dict:
        started = time.perf_counter()
        healthy = super().start(timeout)
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=5, trust_env=False) as http:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    r = http.get(f"{self.url}/healthz")
                    if r.status_code == 200 and r.json().get("ready"):
                        return {
                            "healthz_seconds": round(healthy, 1),
                            "ready_seconds": round(time.perf_counter() - started, 1),
                            "health": r.json(),
                        }
                time.sleep(0.25)
        raise RuntimeError(f"rag serve not ready within {timeout:.0f} s: {self.tail()}")

    def memory(self) -> dict:
        """VmRSS / VmHWM of the server, and of any children it started."""
        own = rss_mib(self.proc.pid)
        children = [
            p.name
            for p in Path("/proc").iterdir()
            if p.name.isdigit() and _ppid(p) == self.proc.pid
        ]
        if children:
            own["children_rss_mib"] = round(sum(rss_mib(c).get("VmRSS", 0) for c in children), 1)
        return own


def _ppid(proc: Path) -> int:
    try:
        return int(proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def ask(http, url: str, question: str) -> tuple[float, dict]:
    started = time.perf_counter()
    r = http.post(f"{url}/api/ask", json={"question": question})
    elapsed = (time.perf_counter() - started) * 1000
    if r.status_code != 200:
        raise RuntimeError(f"/api/ask → {r.status_code}: {r.text[:200]}")
    return elapsed, r.json()


def cites(answer: dict, doc_ids: set[str]) -> bool:
    return any(c.get("doc_id") in doc_ids for c in answer.get("citations", []))


def measure_questions(server: Server, questions: list[dict], warmup: list[str]) -> dict:
    out: dict = {}
    with httpx.Client(timeout=120, trust_env=False) as http:
        for q in warmup:
            ask(http, server.url, q)
        out["rss_after_warmup_mib"] = server.memory()
        others = OtherCpu((server.proc.pid,))
        wall, server_ms, stages = [], [], {}
        refused = gold_hit = gold_n = 0
        for q in questions:
            ms, answer = ask(http, server.url, q["question"])
            wall.append(ms)
            timings = answer.get("timings_ms", {})
            server_ms.append(timings.get("total_ms", 0.0))
            for name, value in timings.items():
                stages.setdefault(name, []).append(value)
            refused += bool(answer.get("refused"))
            if q.get("gold_docs"):
                gold_n += 1
                gold_hit += cites(answer, set(q["gold_docs"]))
        out["rss_after_questions_mib"] = server.memory()
        out["other_processes_cpu_s"] = others.seconds()
    out.update(
        {
            "questions": len(questions),
            "p50_ms": percentile(wall, 50),
            "p95_ms": percentile(wall, 95),
            "max_ms": round(max(wall), 1),
            "server_total_p50_ms": percentile(server_ms, 50),
            "server_total_p95_ms": percentile(server_ms, 95),
            "server_stages_p50_ms": {k: percentile(v, 50) for k, v in stages.items()},
            "server_stages_p95_ms": {k: percentile(v, 95) for k, v in stages.items()},
            "refused": refused,
            "rgb_gold_cited": f"{gold_hit}/{gold_n}",
        }
    )
    return out


def vectors_removed(
    run_dir: Path, folder: Path, questions: list[dict], warmup: list[str], quiet_wait: float
) -> dict:
    """The same questions from a server whose sentence vectors' file was removed: it
    computes those of every chunk a question brings up, once (with the real model: the
    synthetic rows' vectors were not, so answers may differ; this phase is for the time).
    The data dir's own vectors are put back afterwards."""
    kept = run_dir / "sentences-kept"
    kept.mkdir(exist_ok=True)
    for path in folder.glob("sentences.sqlite*"):
        path.rename(kept / path.name)
    server = Server(run_dir)
    computed = 0
    try:
        server.start()
        wait_quiet(quiet_wait)
        out = measure_questions(server, questions, warmup[:1])
    finally:
        server.stop()
        with contextlib.suppress(OSError):  # a server that never started wrote no log
            computed = server.log_path.read_text("utf-8", "replace").count(
                "computed the sentence vectors of"
            )
        for path in folder.glob("sentences.sqlite*"):
            path.unlink()
        for path in kept.iterdir():
            path.rename(folder / path.name)
    keep = ("p50_ms", "p95_ms", "max_ms", "server_stages_p50_ms", "server_stages_p95_ms")
    return {**{k: out[k] for k in keep}, "requests_that_computed": computed}


def upload_and_ask(server: Server, path: Path, doc: dict) -> dict:
    """Upload one document to the running server, wait for its job, then ask about it."""
    out: dict = {}
    others = OtherCpu((server.proc.pid,))
    with httpx.Client(timeout=300, trust_env=False) as http:
        started = time.perf_counter()
        with path.open("rb") as fh:
            r = http.post(
                f"{server.url}/api/documents", files=[("files", (path.name, fh, "text/markdown"))]
            )
        if r.status_code != 202:
            return {"error": f"POST /api/documents → {r.status_code}: {r.text[:200]}"}
        job = r.json()["jobs"][0]
        while time.perf_counter() - started < 900:
            job = http.get(f"{server.url}/api/jobs/{job['id']}").json()
            if job.get("status") in ("indexed", "failed", "no_text", "cancelled"):
                break
            time.sleep(0.1)
        out["job_seconds"] = round(time.perf_counter() - started, 2)
        out["job_status"] = job.get("status")
        out["job_error"] = job.get("error") or None
        ms, answer = ask(http, server.url, doc["question"])
        out["first_answer_ms"] = round(ms, 1)
        out["first_answer_server_ms"] = answer.get("timings_ms", {})
        out["first_answer_generation"] = answer.get("generation")
        out["first_answer_cites_it"] = cites(answer, {job.get("doc_id")})
        out["first_answer_has_figure"] = doc["figure"] in answer.get("answer", "")
        ms, answer = ask(http, server.url, doc["question"])
        out["second_answer_ms"] = round(ms, 1)
        out["rss_after_upload_mib"] = server.memory()
        out["other_processes_cpu_s"] = others.seconds()
    return out


def measure_size(args, size: int, sample_dir: Path, meta: dict, model_src: Path) -> dict:
    from rag.config import Settings
    from rag.index import collection_name

    run_dir = args.work / f"n{size}"
    shutil.rmtree(run_dir, ignore_errors=True)
    data_dir = run_dir / "data"
    (data_dir / "models").mkdir(parents=True)
    # The bundled model is materialised per data dir (the default setting): copy it there.
    subprocess.run(
        ["cp", "-a", str(model_src), str(data_dir / "models" / model_src.name)], check=True
    )
    env = clean_env(data_dir)
    result: dict = {"size": size, "data_dir": str(data_dir), "git_at_start": git_state()}

    result["load_before_build"] = wait_quiet(args.quiet_wait)
    log(f"[{size}] building through Index + Writer (precomputed vectors, no model)")
    config = {
        "size": size,
        "sample": str(sample_dir),
        "seed": args.seed,
        "noise": args.noise,
        "kbs": args.kbs.split(","),
        "result": str(run_dir / "build.json"),
        "progress": str(run_dir / "build-progress.jsonl"),
    }
    (run_dir / "build-config.json").write_text(json.dumps(config), "utf-8")
    child = run_child(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--build",
            str(run_dir / "build-config.json"),
        ],
        env,
        run_dir,
        args.build_timeout,
        run_dir / "build.log",
    )
    if child["returncode"] != 0 or not (run_dir / "build.json").is_file():
        err = (run_dir / "build.err").read_text("utf-8", "replace").strip().splitlines()
        progress = (
            (run_dir / "build-progress.jsonl").read_text().splitlines()[-3:]
            if (run_dir / "build-progress.jsonl").is_file()
            else []
        )
        result["build_failed"] = {**child, "stderr_tail": err[-5:], "progress_tail": progress}
        log(f"[{size}] build FAILED: {result['build_failed']}")
        return result
    build_result = json.loads((run_dir / "build.json").read_text("utf-8"))
    result["build"] = {**build_result, "process_wall_seconds": child["wall_seconds"]}
    result["build"]["peak_rss_mib"] = child["peak_rss_mib"]
    result["build"]["other_processes_cpu_s"] = child["other_processes_cpu_s"]
    log(
        f"[{size}] built {build_result['chunks']} chunks in {child['wall_seconds']} s "
        f"({build_result['write_chunks_per_s_excl_model']} chunks/s excl. model), "
        f"peak RSS {child['peak_rss_mib']} MiB"
    )

    settings = Settings(data_dir=data_dir)
    folder = data_dir / "indexes" / collection_name(settings.collection, settings.embedding_model)
    result["disk_mib"] = {
        "chroma": disk_mib(data_dir / "chroma"),
        "chroma_sqlite": disk_mib(data_dir / "chroma" / "chroma.sqlite3"),
        "lexical": disk_mib(folder / "lexical"),
        "manifest": round(sum(disk_mib(p) for p in folder.glob("manifest.sqlite*")), 1),
        "sentences": round(sum(disk_mib(p) for p in folder.glob("sentences.sqlite*")), 1),
        "index_total": round(disk_mib(data_dir) - disk_mib(data_dir / "models"), 1),
        "model_copy": disk_mib(data_dir / "models"),
    }
    log(f"[{size}] disk: {result['disk_mib']}")

    new = meta["new_documents"]
    cli_dir = run_dir / "new-cli"
    write_new_doc(cli_dir, "scale-new-cli.md", new[0])
    result["load_before_ingest"] = wait_quiet(args.quiet_wait)
    log(f"[{size}] rag ingest of one new document (no server running)")
    result["cli_ingest"] = rag_ingest(cli_dir, env, run_dir, "ingest-cli")
    result["cli_ingest"]["characters"] = len(new[0]["text"])
    log(f"[{size}] rag ingest: {result['cli_ingest']}")

    server = Server(run_dir)
    try:
        log(f"[{size}] starting rag serve")
        result["server_start"] = server.start()
        log(f"[{size}] server ready: {result['server_start']}")
        rng = np.random.default_rng(args.seed)
        rgb = [
            {"question": q["question"], "gold_docs": q["gold_docs"]} for q in meta["rgb_questions"]
        ]
        made = [{"question": q["question"]} for q in meta["made_questions"]]
        warmup = [q["question"] for q in made[:5]]
        picked = rgb[: args.questions] + made[5 : 5 + max(0, args.questions - len(rgb))]
        picked = [picked[i] for i in rng.permutation(len(picked))]
        result["load_before_questions"] = wait_quiet(args.quiet_wait)
        log(f"[{size}] {len(picked)} questions, one at a time ({result['load_before_questions']})")
        result["ask"] = measure_questions(server, picked, warmup)
        result["ask"]["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
        log(
            f"[{size}] p50 {result['ask']['p50_ms']} ms, p95 {result['ask']['p95_ms']} ms, "
            f"RSS {result['ask']['rss_after_questions_mib']}"
        )
        with httpx.Client(timeout=120, trust_env=False) as http:
            ms, answer = ask(http, server.url, new[0]["question"])
        result["cli_ingested_doc_answer"] = {
            "ms": round(ms, 1),
            "cites_it": cites(answer, {"scale-new-cli.md"}),
            "has_figure": new[0]["figure"] in answer.get("answer", ""),
        }
        busy_dir = run_dir / "new-busy"
        write_new_doc(busy_dir, "scale-new-busy.md", new[1])
        log(f"[{size}] rag ingest beside the running server")
        result["cli_ingest_beside_server"] = rag_ingest(busy_dir, env, run_dir, "ingest-busy")
        log(f"[{size}] upload of one new document to the running server")
        up = write_new_doc(run_dir / "new-upload", "scale-new-upload.md", new[2])
        result["upload"] = upload_and_ask(server, up, new[2])
        log(f"[{size}] upload: {result['upload']}")
        server.stop()
        result["vectors_removed"] = vectors_removed(
            run_dir, folder, picked, warmup, args.quiet_wait
        )
        log(f"[{size}] sentence vectors' file removed: {result['vectors_removed']}")
        if args.profile_ingest:
            log(f"[{size}] rag ingest of one more document under cProfile")
            prof_dir = run_dir / "new-profile"
            write_new_doc(prof_dir, "scale-new-profile.md", new[3])
            result["cli_ingest_profiled"] = profile_ingest(prof_dir, env, run_dir)
    except Exception as exc:  # what broke is a finding: keep what was measured
        result["error"] = f"{type(exc).__name__}: {exc}"
        log(f"[{size}] FAILED: {result['error']}")
    finally:
        server.stop()
        result["server_log_tail"] = server.tail()
        result["git_at_end"] = git_state()
    return result


# -------------------------------------------------------------------------------- report


def table(results: list[dict], meta: dict) -> str:
    m = meta["measure"]

    def g(r, *path, default="–"):
        for p in path:
            if not isinstance(r, dict) or p not in r:
                return default
            r = r[p]
        return r

    def rss(r, phase, key):
        """'VmRSS (VmHWM)' of the server as `phase` recorded it under `key`."""
        return f"{g(r, phase, key, 'VmRSS')} ({g(r, phase, key, 'VmHWM')})"

    rows = [
        (
            "chunks (real + synthetic)",
            lambda r: (
                f"{g(r, 'build', 'chunks')} ({g(r, 'build', 'real_chunks')} + {g(r, 'build', 'synthetic_chunks')})"
            ),
        ),
        ("documents", lambda r: g(r, "build", "documents")),
        ("build: wall s (child process)", lambda r: g(r, "build", "process_wall_seconds")),
        (
            "build: writer chunks/s, precomputed vectors (excl. model)",
            lambda r: g(r, "build", "write_chunks_per_s_excl_model"),
        ),
        (
            "build: of which commits s (count, last one s)",
            lambda r: (
                f"{g(r, 'build', 'commit_seconds')} ({g(r, 'build', 'commits')}, {g(r, 'build', 'commit_seconds_first_last', default=['–', '–'])[1]})"
            ),
        ),
        (
            "build: Chroma add s / lexical derive s / lexical save s",
            lambda r: (
                f"{g(r, 'build', 'inside_product_seconds', 'chroma_add')} / {g(r, 'build', 'inside_product_seconds', 'lexical_derive')} / {g(r, 'build', 'inside_product_seconds', 'lexical_save')}"
            ),
        ),
        ("build: peak RSS MiB", lambda r: g(r, "build", "peak_rss_mib")),
        ("model encode chunks/s (real sample, once)", lambda r: m["encode_chunks_per_s"]),
        (
            "lexical, one more document: load / derive / save s",
            lambda r: " / ".join(
                str(g(r, "build", "lexical_one_doc_change_seconds", k))
                for k in ("load", "derive", "save")
            ),
        ),
        (
            "disk MiB: total (chroma / lexical / manifest / sentence vectors)",
            lambda r: (
                f"{g(r, 'disk_mib', 'index_total')} ({g(r, 'disk_mib', 'chroma')} / {g(r, 'disk_mib', 'lexical')} / {g(r, 'disk_mib', 'manifest')} / {g(r, 'disk_mib', 'sentences')})"
            ),
        ),
        ("serve: ready s", lambda r: g(r, "server_start", "ready_seconds")),
        (
            "serve RSS MiB after warm-up (HWM)",
            lambda r: rss(r, "ask", "rss_after_warmup_mib"),
        ),
        (
            "serve RSS MiB after questions (HWM)  [target < 3072]",
            lambda r: rss(r, "ask", "rss_after_questions_mib"),
        ),
        (
            "serve RSS MiB after upload job (HWM)",
            lambda r: rss(r, "upload", "rss_after_upload_mib"),
        ),
        ("/api/ask p50 ms", lambda r: g(r, "ask", "p50_ms")),
        ("/api/ask p95 ms  [target < 300]", lambda r: g(r, "ask", "p95_ms")),
        (
            "/api/ask p50 / p95 ms, sentence vectors' file removed",
            lambda r: f"{g(r, 'vectors_removed', 'p50_ms')} / {g(r, 'vectors_removed', 'p95_ms')}",
        ),
        (
            "server total_ms p50 / p95",
            lambda r: (
                f"{g(r, 'ask', 'server_total_p50_ms')} / {g(r, 'ask', 'server_total_p95_ms')}"
            ),
        ),
        (
            "p50 ms embed / dense / lexical / fuse / answer",
            lambda r: " / ".join(
                str(g(r, "ask", "server_stages_p50_ms", k))
                for k in ("embed_ms", "dense_ms", "lexical_ms", "fuse_ms", "answer_ms")
            ),
        ),
        (
            "other processes' CPU s: build / questions / ingest",
            lambda r: " / ".join(
                str(g(r, *k, "other_processes_cpu_s"))
                for k in (("build",), ("ask",), ("cli_ingest",))
            ),
        ),
        (
            "rgb gold passage cited / refused",
            lambda r: f"{g(r, 'ask', 'rgb_gold_cited')} / {g(r, 'ask', 'refused')}",
        ),
        (
            "rag ingest 1 doc: wall s (own seconds)  [target < 10]",
            lambda r: f"{g(r, 'cli_ingest', 'wall_seconds')} ({g(r, 'cli_ingest', 'seconds')})",
        ),
        ("rag ingest 1 doc: peak RSS MiB", lambda r: g(r, "cli_ingest", "peak_rss_mib")),
        (
            "rag ingest beside the server: exit code",
            lambda r: g(r, "cli_ingest_beside_server", "returncode"),
        ),
        ("upload 1 doc to the server: job s", lambda r: g(r, "upload", "job_seconds")),
        (
            "first answer after upload: ms, cites it",
            lambda r: (
                f"{g(r, 'upload', 'first_answer_ms')}, {g(r, 'upload', 'first_answer_cites_it')}"
            ),
        ),
    ]
    head = ["", *[f"N={r['size']:,}" for r in results]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, cell in rows:
        lines.append("| " + " | ".join([label, *[str(cell(r)) for r in results]]) + " |")
    return "\n".join(lines)


def verdicts(result: dict) -> dict:
    """The targets, for the row they are set for (and printed for every size)."""
    p95 = result.get("ask", {}).get("p95_ms")
    asked = result.get("ask", {}).get("rss_after_questions_mib", {}).get("VmHWM")
    uploaded = result.get("upload", {}).get("rss_after_upload_mib", {}).get("VmHWM")
    ingest = result.get("cli_ingest", {}).get("wall_seconds")
    limit = TARGETS["server_rss_mib"]
    return {
        "p95_lt_300ms": None if p95 is None else p95 < TARGETS["p95_ms"],
        "server_peak_rss_answering_lt_3GiB": None if not asked else asked < limit,
        "server_peak_rss_incl_upload_job_lt_3GiB": None if not uploaded else uploaded < limit,
        "one_doc_ingest_lt_10s": None if ingest is None else ingest < TARGETS["ingest_seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--work", type=Path, default=Path("/tmp/scale-bench"))
    parser.add_argument("--benchmarks", type=Path, default=REPO.parent / "shared" / "benchmarks")
    parser.add_argument(
        "--model-dir", type=Path, default=REPO / "data" / "models" / "multilingual-e5-small"
    )
    parser.add_argument("--sample-chunks", type=int, default=3000)
    parser.add_argument("--rgb-share", type=float, default=0.35)
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument(
        "--kbs", default="default,新闻,资料", help="knowledge bases of synthetic documents"
    )
    parser.add_argument("--noise", type=float, default=0.01, help="Gaussian sigma per dimension")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--build-timeout", type=float, default=2400)
    parser.add_argument("--fresh-sample", action="store_true", help="embed the sample again")
    parser.add_argument(
        "--profile-ingest",
        action="store_true",
        help="also run one more one-document `rag ingest` under cProfile, for a breakdown",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=600,
        help="seconds to wait, before each timed phase, for other processes to go quiet",
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "scale.json")
    parser.add_argument("--build", type=Path, help=argparse.SUPPRESS)  # the child's config
    args = parser.parse_args()
    if args.build:
        build(json.loads(args.build.read_text("utf-8")))
        return

    sizes = [int(s) for s in args.sizes.split(",")]
    if any(s > 1_000_000 for s in sizes):
        sys.exit("sizes up to 1,000,000")
    for key in [k for k in os.environ if k.startswith("RAG_")]:
        del os.environ[key]  # the defaults, as the children get them
    for name in ("work", "benchmarks", "model_dir", "out"):
        setattr(args, name, getattr(args, name).resolve())
    args.work.mkdir(parents=True, exist_ok=True)
    os.chdir(args.work)  # no rag.toml here: every setting is its default

    from rag import e5_bundle
    from rag.config import Settings

    model_home = args.work / "model-home"
    model_src = model_home / "models" / "multilingual-e5-small"
    if not (model_src / "materialised.json").is_file():
        if args.model_dir.joinpath("materialised.json").is_file():
            model_src.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["cp", "-a", str(args.model_dir), str(model_src)], check=True)
        else:
            e5_bundle.materialise(model_src)
    settings = Settings(data_dir=model_home)
    sample_dir, meta = prepare_sample(args, settings, model_home)
    log(f"sample: {json.dumps(meta['measure'])}")

    results = []
    started = datetime.now(UTC).isoformat(timespec="seconds")
    for size in sizes:
        result = measure_size(args, size, sample_dir, meta, model_src)
        result["targets_met"] = verdicts(result)
        results.append(result)
        out = {
            "what": "bench/scale.py: rows beyond the real sample carry vectors copied from it "
            "with Gaussian noise and recombined, varied text; write rates exclude the model",
            "started": started,
            "machine": {"cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg()},
            "sample": {
                k: v
                for k, v in meta.items()
                if k in ("measure", "documents", "documents_by_set", "key")
            },
            "noise_sigma": args.noise,
            "targets": TARGETS,
            "results": results,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, ensure_ascii=False, indent=1), "utf-8")
    print(table(results, meta))
    for r in results:
        print(f"N={r['size']:,} targets: {json.dumps(r['targets_met'])}")
    print(f"wrote {args.out}; data dirs under {args.work}")
    print(
        "Rows beyond the real sample are synthetic (real vectors + Gaussian noise, recombined "
        "text with varied figures); write rates exclude the model, whose encode rate is "
        f"{meta['measure']['encode_chunks_per_s']} chunks/s on the real sample."
    )


if __name__ == "__main__":
    main()
