"""Ingest throughput per embedding backend, in one run, against a raw encode of the same chunks.

Usage: python bench/ingest_throughput.py ../shared/benchmarks/crud-news/docs.jsonl.gz --records 2000
       [--backends torch,onnx,openvino]

`rag ingest` runs once per backend as a subprocess, each into a fresh data dir, on the
same records and the same model folder (materialised and exported to ONNX before any
timing, so no run pays for that); its `seconds` cover loading, cleaning, splitting,
embedding, Chroma and BM25. The first backend listed is the baseline every other is
compared with (`x_baseline`: chunks/s over the baseline's, same machine, same run).
Then this process encodes the very same chunk texts with the default backend
(`embed_documents`: chunk vectors only, all texts sorted by length at once, so it pads a
little less than ingest's batches); `ratio` is the share of that raw rate the whole
pipeline keeps on the default backend (target >= 0.8). Peak RSS is each ingest
process's own.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rag import e5_bundle, onnx_model
from rag.config import Settings
from rag.embed import BACKENDS, LazyEmbeddings
from rag.ingest import make_chunks
from rag.load import Source, iter_sources


def run_ingest(sample: Path, data_dir: Path, model: Path, backend: str) -> dict:
    env = {
        **os.environ,
        "RAG_DATA_DIR": str(data_dir),
        "RAG_EMBEDDING_MODEL": str(model),
        "RAG_EMBED_BACKEND": backend,
        "HF_HUB_OFFLINE": "1",
    }
    rag = str(Path(sys.executable).with_name("rag"))
    started = time.perf_counter()
    proc = subprocess.Popen(
        [rag, "ingest", str(sample), "--json"], env=env, stdout=subprocess.PIPE, text=True
    )
    out = proc.stdout.read()
    # wait4, not proc.wait(): it gives this child's own peak RSS (RUSAGE_CHILDREN would
    # be the largest over every backend run so far); Popen is told the child is reaped.
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"rag ingest with RAG_EMBED_BACKEND={backend} failed ({proc.returncode})")
    report = json.loads(out)
    return {
        "backend": backend,
        "chunks": report["chunks_written"],
        "seconds": round(report["seconds"], 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "chunks_per_s": round(report["chunks_written"] / report["seconds"], 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("records_file", type=Path)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--backends", default="torch,onnx,openvino")
    parser.add_argument("--out", type=Path, default=Path("bench/results/ingest_throughput.json"))
    args = parser.parse_args()
    backends = args.backends.split(",")
    if unknown := set(backends) - set(BACKENDS):
        sys.exit(f"unknown backend(s) {sorted(unknown)}; use {BACKENDS}")

    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    sample = work / "sample.jsonl"
    with gzip.open(args.records_file, "rt", encoding="utf-8") as src, sample.open("w") as dst:
        for n, line in enumerate(src):
            if n >= args.records:
                break
            dst.write(line)
    model = e5_bundle.materialise(work / "models" / "multilingual-e5-small")
    onnx_model.ensure_export(str(model), model / "rag-onnx")

    runs = [run_ingest(sample, work / f"data-{b}", model, b) for b in backends]
    for run in runs:
        run["x_baseline"] = round(run["chunks_per_s"] / runs[0]["chunks_per_s"], 2)
        print(json.dumps(run), flush=True)

    settings = Settings(data_dir=work / "data-raw", embedding_model=str(model))
    texts = []
    for source in iter_sources(sample):
        if isinstance(source, Source):
            doc = source.load()
            texts.extend(
                c.text for c in make_chunks(doc, settings.chunk_size, settings.chunk_overlap)
            )
    embeddings = LazyEmbeddings(
        settings.embedding_model,
        settings.data_dir,
        batch_size=settings.embed_batch_size,
        backend=settings.embed_backend,
    )
    embeddings.embed_query("预热")  # load the model outside the timed part
    started = time.perf_counter()
    embeddings.embed_documents(texts)
    raw_seconds = time.perf_counter() - started
    raw_rate = len(texts) / raw_seconds
    default = next((r for r in runs if r["backend"] == settings.embed_backend), None)

    result = {
        "records": args.records,
        "chunks": len(texts),
        "baseline": backends[0],
        "default_backend": settings.embed_backend,
        "ingest": runs,
        "raw_encode_seconds": round(raw_seconds, 1),
        "raw_encode_chunks_per_s": round(raw_rate, 2),
        "ratio": round(default["chunks_per_s"] / raw_rate, 3) if default else None,
    }
    assert all(r["chunks"] == len(texts) for r in runs), (len(texts), runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2), "utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
