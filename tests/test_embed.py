import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from rag import onnx_model
from rag.config import Settings
from rag.e5_bundle import BUNDLED_E5
from rag.embed import InFlight, LazyEmbeddings, default_prefixes, model_slug, pool_spans
from rag.split import sentence_spans


def test_pool_spans_averages_the_tokens_inside_each_span():
    tokens = np.array([[9.0, 9.0], [1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [9.0, 9.0]])
    # offsets in "passage: " + text; specials (0, 0) are skipped
    chars = [(0, 0), (9, 11), (11, 13), (13, 15), (0, 0)]
    out = pool_spans(tokens, chars, [(0, 4), (4, 6)], offset=9, fallback=np.array([1.0, 0.0]))
    np.testing.assert_allclose(out[0], [1.0, 0.0])  # mean of [1,0] and [3,0], normalised
    np.testing.assert_allclose(out[1], [0.0, 1.0])


def test_a_span_without_tokens_gets_the_fallback():
    out = pool_spans(np.ones((1, 2)), [(0, 0)], [(0, 3)], offset=9, fallback=np.array([0.0, 2.0]))
    np.testing.assert_allclose(out[0], [0.0, 1.0])


def test_model_names_and_prefixes():
    assert model_slug(BUNDLED_E5) == "multilingual-e5-small"
    assert model_slug("BAAI/bge-small-zh-v1.5") == "bge-small-zh-v1-5"
    assert default_prefixes("intfloat/multilingual-e5-base") == ("query: ", "passage: ")
    assert default_prefixes("BAAI/bge-small-zh-v1.5") == ("", "")


TEXTS = [
    "第七条 飞地项目投产后前5年，税收按6:4分成。第6年起按5:5分成。",
    "本办法自2024年1月1日起施行，有效期三年。" * 12,  # long: padded batch, many tokens
]
SPANS = [[(s.start, s.end) for s in sentence_spans(text)] for text in TEXTS]


@pytest.fixture(scope="module")
def torch_embeddings(e5_dir, tmp_path_factory) -> LazyEmbeddings:
    return LazyEmbeddings(str(e5_dir), tmp_path_factory.mktemp("torch"), backend="torch")


@pytest.fixture(scope="module")
def onnxruntime_embeddings(e5_dir, tmp_path_factory) -> LazyEmbeddings:
    return LazyEmbeddings(str(e5_dir), tmp_path_factory.mktemp("onnx"), backend="onnx")


def assert_same_vectors(ours, theirs, atol: float) -> None:
    """Same vectors: close coordinates, and so the same direction (cosine > 1 - atol)."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=atol)
    assert ((ours * theirs).sum(axis=-1) > 1 - atol).all()


# ONNX Runtime computes in float32 like torch; OpenVINO computes in bfloat16 where the
# CPU has it (largest difference measured 8e-4, cosine 0.99999), else float32.
@pytest.mark.parametrize(("backend", "atol"), [("onnx", 1e-5), ("openvino", 3e-3)])
def test_every_backend_gives_torchs_vectors(
    backend, atol, embeddings, onnxruntime_embeddings, torch_embeddings
):
    assert embeddings.backend == "openvino"  # the default
    model = embeddings if backend == "openvino" else onnxruntime_embeddings
    for question in ("飞地项目的税收怎么分成？", "明川区楼宇经济政策什么时候开始施行？"):
        assert_same_vectors(
            model.embed_query(question), torch_embeddings.embed_query(question), atol
        )
    assert_same_vectors(model.embed_documents(TEXTS), torch_embeddings.embed_documents(TEXTS), atol)
    chunks, sentences = model.embed_chunks(TEXTS, SPANS)
    torch_chunks, torch_sentences = torch_embeddings.embed_chunks(TEXTS, SPANS)
    assert_same_vectors(chunks, torch_chunks, atol)
    for ours, theirs, spans in zip(sentences, torch_sentences, SPANS, strict=True):
        assert ours.shape == (len(spans), 384)
        assert_same_vectors(ours, theirs, atol)
    # the two sentences of the first chunk are read apart, not as one vector
    assert float(sentences[0][0] @ sentences[0][1]) < 0.99


def test_a_servers_reader_and_writer_share_one_compiled_model(e5_dir, embeddings, tmp_path):
    """A server holds two models (answers never wait behind an ingest batch): on OpenVINO
    they share the compiled weights (~600 MiB each otherwise) through an infer request
    each, and running both at once gives each its own, right, vectors."""
    from concurrent.futures import ThreadPoolExecutor

    writer = LazyEmbeddings(str(e5_dir), tmp_path / "writer-data")
    writer.embed_query("预热"), embeddings.embed_query("预热")
    reader_encoder, writer_encoder = embeddings._model(), writer._model()
    assert reader_encoder is not writer_encoder
    assert reader_encoder.compiled is writer_encoder.compiled
    assert reader_encoder.request is not writer_encoder.request
    alone = embeddings.embed_documents(TEXTS)
    with ThreadPoolExecutor(2) as pool:
        for _ in range(3):
            asked = pool.submit(embeddings.embed_documents, TEXTS)
            written = pool.submit(writer.embed_chunks, TEXTS[::-1], SPANS[::-1])
            np.testing.assert_allclose(asked.result(), alone, atol=1e-6)
            np.testing.assert_allclose(written.result()[0][::-1], alone, atol=1e-6)


def test_two_encoders_of_one_compiled_model_never_infer_at_the_same_time(
    e5_dir, embeddings, tmp_path
):
    """One owner of the compiled model's inference: the warm-up and the ingest worker in
    it at once hung a restarted server for good (issue 32)."""
    from concurrent.futures import ThreadPoolExecutor

    writer = LazyEmbeddings(str(e5_dir), tmp_path / "writer-data")
    writer.embed_query("预热"), embeddings.embed_query("预热")
    inside, most = 0, 0
    count = threading.Lock()

    class Watched:
        def __init__(self, request):
            self.request = request

        def infer(self, inputs):
            nonlocal inside, most
            with count:
                inside += 1
                most = max(most, inside)
            time.sleep(0.02)  # long enough for the other thread to come in, if it may
            try:
                return self.request.infer(inputs)
            finally:
                with count:
                    inside -= 1

        def __getattr__(self, name):
            return getattr(self.request, name)

    encoders = [embeddings._model(), writer._model()]
    originals = [e.request for e in encoders]
    try:
        for encoder in encoders:
            encoder.request = Watched(encoder.request)
        with ThreadPoolExecutor(2) as pool:
            jobs = [pool.submit(embeddings.embed_query, f"问题{i}") for i in range(6)]
            jobs += [pool.submit(writer.embed_documents, TEXTS) for _ in range(6)]
            for job in jobs:
                job.result(timeout=120)
    finally:
        for encoder, request in zip(encoders, originals, strict=True):
            encoder.request = request
    assert most == 1


def test_a_call_in_progress_is_timed_for_liveness():
    calls = InFlight()
    assert calls.oldest() == 0.0
    with calls.one():
        time.sleep(0.05)
        assert calls.oldest() >= 0.05
    assert calls.oldest() == 0.0


def test_the_compiled_model_is_cached_and_a_new_process_gives_the_same_vectors(e5_dir, embeddings):
    """OpenVINO keeps the compiled model beside the export, so the next process loads it
    instead of compiling again (bench/README.md: 5.4 s → 1.4 s to a ready encoder); the
    vectors from the cached blob are the ones compiling gives."""
    import json
    import subprocess
    import sys

    here = embeddings.embed_query("飞地项目的税收怎么分成？")
    assert list((e5_dir / "rag-onnx" / "openvino-cache").glob("*.blob"))
    script = (
        "import json, sys; from rag.embed import LazyEmbeddings; "
        f"e = LazyEmbeddings({str(e5_dir)!r}, {str(e5_dir.parent)!r}); "
        "print(json.dumps(e.embed_query('飞地项目的税收怎么分成？')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(json.loads(done.stdout), here, atol=1e-6)


def test_the_export_is_made_once_and_reused(e5_dir, embeddings, tmp_path):
    embeddings.embed_query("预热")
    graph = e5_dir / "rag-onnx" / "model.onnx"
    written = graph.stat().st_mtime_ns
    other = LazyEmbeddings(str(e5_dir), tmp_path / "other-data")
    assert len(other.embed_query("预热")) == 384
    assert graph.stat().st_mtime_ns == written
    # the same folder by another spelling is the same model
    assert onnx_model.exported(e5_dir / "rag-onnx", f"{e5_dir}/../{e5_dir.name}")


def test_an_export_of_other_weights_does_not_count(e5_dir, embeddings, tmp_path):
    embeddings.embed_query("预热")
    model = tmp_path / "model"
    shutil.copytree(e5_dir, model, ignore=shutil.ignore_patterns("rag-onnx"))
    shutil.copytree(e5_dir / "rag-onnx", tmp_path / "export")
    weights = model / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, (e5_dir / weights.name).stat().st_mtime_ns))
    assert onnx_model.exported(tmp_path / "export", str(model))
    os.utime(weights)  # new weights (as far as size and mtime tell)
    assert not onnx_model.exported(tmp_path / "export", str(model))


def test_two_exports_at_once_make_one(e5_dir, tmp_path):
    """A server's two model instances (or `rag ingest` beside it) start together: one
    exports, the other waits for the lock and finds the export made."""
    model = tmp_path / "model"
    shutil.copytree(e5_dir, model, ignore=shutil.ignore_patterns("rag-onnx"))
    (tmp_path / "rag-onnx.tmp-99999").mkdir()  # what a killed export leaves
    results: list[bool] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(
                onnx_model.ensure_export(str(model), tmp_path / "rag-onnx")
            )
        )
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, True]
    assert onnx_model.exported(tmp_path / "rag-onnx", str(model))
    assert not list(tmp_path.glob("rag-onnx.tmp-*"))


def test_a_failed_export_leaves_nothing_and_says_what_to_do(e5_dir, tmp_path, monkeypatch):
    import torch

    def broken(*args, **kwargs):
        (Path(args[2]).parent / "partial.bin").write_bytes(b"half a graph")
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(
        onnx_model.ExportError, match=r"unsupported operator.*RAG_EMBED_BACKEND=torch"
    ):
        onnx_model.export(str(e5_dir), tmp_path / "rag-onnx")
    assert list(tmp_path.iterdir()) == []  # the temporary folder is gone, no export left
    # a model that cannot even be loaded: one line, from the child process a server uses
    with pytest.raises(onnx_model.ExportError, match=r"^cannot load embedding model .*RAG_EMB"):
        onnx_model.export_in_subprocess(str(tmp_path / "no-such-model"), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_backend_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown embedding backend 'gpu'"):
        LazyEmbeddings("m", tmp_path, backend="gpu")
    with pytest.raises(ValidationError):
        Settings(embed_backend="gpu")
