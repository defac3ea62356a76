"""Ingest throughput: chunks/s through `rag ingest` against a raw encode of the same chunks.

Usage: python bench/ingest_throughput.py ../shared/benchmarks/crud-news/docs.jsonl.gz --records 2000

Both figures come from one run on the same chunks: `rag ingest` runs as a subprocess (a
fresh data dir, the bundled e5 model; its `seconds` cover loading, cleaning, splitting,
embedding, Chroma and BM25), then this process encodes the very same chunk texts with
the same model, backend and batch size (`embed_documents`: chunk vectors only, all texts
sorted by length at once, so it pads a little less than ingest's batches). The ratio is
the share of the raw encode rate that the whole pipeline keeps (target >= 0.8). Peak RSS
is the ingest subprocess's (the one-time ONNX export runs in a child of its own).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rag.config import Settings
from rag.embed import LazyEmbeddings
from rag.ingest import make_chunks
from rag.load import Source, iter_sources


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("records_file", type=Path)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("bench/results/ingest_throughput.json"))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    sample = work / "sample.jsonl"
    with gzip.open(args.records_file, "rt", encoding="utf-8") as src, sample.open("w") as dst:
        for n, line in enumerate(src):
            if n >= args.records:
                break
            dst.write(line)

    env = {**os.environ, "RAG_DATA_DIR": str(work / "data"), "HF_HUB_OFFLINE": "1"}
    rag = str(Path(sys.executable).with_name("rag"))
    started = time.perf_counter()
    proc = subprocess.run(
        [rag, "ingest", str(sample), "--json"], env=env, capture_output=True, text=True, check=True
    )
    wall = time.perf_counter() - started
    peak_rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    report = json.loads(proc.stdout)
    ingest_rate = report["chunks_written"] / report["seconds"]

    settings = Settings(data_dir=work / "data")
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

    result = {
        "records": args.records,
        "documents": report["added"],
        "chunks": report["chunks_written"],
        "ingest_seconds": round(report["seconds"], 1),
        "ingest_wall_seconds": round(wall, 1),
        "ingest_chunks_per_s": round(ingest_rate, 2),
        "raw_encode_seconds": round(raw_seconds, 1),
        "raw_encode_chunks_per_s": round(raw_rate, 2),
        "ratio": round(ingest_rate / raw_rate, 3),
        "ingest_peak_rss_mib": round(peak_rss_mib),
    }
    assert len(texts) == report["chunks_written"], (len(texts), report["chunks_written"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2), "utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
