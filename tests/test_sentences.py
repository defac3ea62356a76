"""Sentence vectors live beside Chroma (rag.sentences), named by what they were computed
from, and a data dir that lacks them computes them once."""

import logging

import numpy as np
import pytest

from rag.index import Filters
from rag.ingest import ingest
from rag.retrieve import HybridRetriever
from rag.sentences import SentenceVectors, SharedSentences, framed, sentence_key

QUESTION = "楼宇租金补贴多少"


@pytest.fixture
def indexed(index, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "tower.txt").write_text(
        "明川区楼宇经济扶持办法\n第三条 对新入驻重点楼宇的企业，第一年按实际租金的50%给予补贴。"
        "第二年按30%给予补贴，最高100万元。\n第四条 楼宇业主引进企业的，给予一次性奖励。",
        "utf-8",
    )
    (folder / "enclave.txt").write_text(
        "明川区飞地经济合作办法\n第七条 税收前5年按6:4分成，第6年起按5:5分成。", "utf-8"
    )
    ingest([folder], index, 60, 0)
    return index


def test_the_key_names_the_text_that_was_embedded_title_included():
    spans = [(0, 10)]
    assert sentence_key("第七条 税收按6:4分成。", spans) == sentence_key(
        "第七条 税收按6:4分成。", spans
    )
    assert sentence_key("第七条 税收按6:4分成。", spans) != sentence_key(
        "第七条 税收按5:5分成。", spans
    )
    assert sentence_key("第七条 税收按6:4分成。", spans) != sentence_key(
        "第七条 税收按6:4分成。", [(0, 9)]
    )


def test_they_are_kept_beside_chroma_and_equal_the_models_own(indexed, embeddings):
    rows = indexed.store.collection.get(include=["metadatas"])["metadatas"]
    assert rows and all("sentence_vectors" not in meta for meta in rows)
    assert indexed.sentences.count() == len({meta["sentence_key"] for meta in rows})

    snapshot = indexed.snapshot()
    query = np.asarray(embeddings.embed_query(QUESTION), np.float32)
    stored = snapshot.dense_search(query, 3, Filters())
    kept = snapshot.sentence_vectors(stored)
    inputs = [framed(s.chunk, s.sentence_spans) for s in stored]
    _, computed = embeddings.embed_chunks([t for t, _ in inputs], [sp for _, sp in inputs])
    for vectors, model, s in zip(kept, computed, stored, strict=True):
        assert vectors.shape == (len(s.sentence_spans), 384)
        np.testing.assert_allclose(vectors, model, atol=2e-3)  # float16 on disk


def test_a_data_dir_without_them_computes_them_once_and_ranks_alike(indexed, caplog):
    retriever = HybridRetriever(index=indexed)
    before = retriever.search(QUESTION, 3)
    indexed.sentences.clear()  # as a replica on a Chroma server starts: none held

    with caplog.at_level(logging.INFO, logger="rag.sentences"):
        again = retriever.search(QUESTION, 3)
    assert "computed the sentence vectors of" in caplog.text
    assert [h.chunk.chunk_id for h in again] == [h.chunk.chunk_id for h in before]
    for a, b in zip(again, before, strict=True):
        np.testing.assert_allclose(a.sentence_scores, b.sentence_scores, atol=1e-6)
    assert indexed.sentences.count() > 0

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="rag.sentences"):
        retriever.search(QUESTION, 3)
    assert "computed" not in caplog.text  # kept the first time


def test_vectors_go_with_the_last_row_that_names_them(indexed, caplog):
    docs = indexed.manifest.docs()
    enclave = next(d for d in docs if d.endswith("enclave.txt"))
    tower = next(d for d in docs if d.endswith("tower.txt"))
    removed, edited = keys_of(indexed, enclave), keys_of(indexed, tower)
    assert removed and edited and not removed & edited

    def commit(change) -> None:
        with indexed.writer() as writer:
            change(writer)
            writer.commit()

    commit(lambda w: w.edit(tower, {"title": "明川区楼宇经济扶持办法（修订）"}))
    commit(lambda w: w.remove([enclave]))  # collects the edited document's old rows
    held = set(indexed.sentences.get(list(removed | edited)))
    assert held == removed | edited  # the edited copies name them; readers may be at the removed
    commit(lambda w: w.edit(tower, {"title": "明川区楼宇经济扶持办法（再修订）"}))
    assert set(indexed.sentences.get(list(removed | edited))) == edited  # the removed ones went

    with caplog.at_level(logging.INFO, logger="rag.sentences"):
        hits = HybridRetriever(index=indexed).search(QUESTION, 3)
    assert hits and "computed" not in caplog.text


def test_vectors_computed_after_an_edit_are_not_kept_under_the_old_text_s_key(indexed, caplog):
    """An edited title changes the text a chunk is read with, but its rows keep the key of
    the text the writer embedded: vectors computed now would not be that text's."""
    tower = next(d for d in indexed.manifest.docs() if d.endswith("tower.txt"))
    with indexed.writer() as writer:
        writer.edit(tower, {"title": "明川区楼宇经济扶持办法（修订）"})
    indexed.sentences.clear()  # the file lost

    with caplog.at_level(logging.INFO, logger="rag.sentences"):
        hits = HybridRetriever(index=indexed).search(QUESTION, 3)
    assert any(h.chunk.doc_id == tower and h.sentence_scores for h in hits)
    assert "edited since" in caplog.text
    assert not indexed.sentences.get(list(keys_of(indexed, tower)))


def keys_of(index, doc_id: str) -> set[str]:
    metas = index.store.collection.get(where={"doc_id": doc_id}, include=["metadatas"])
    return {m["sentence_key"] for m in metas["metadatas"]}


def test_with_a_chroma_server_a_replica_reads_what_the_writer_put_there(indexed, tmp_path, caplog):
    """Two data dirs (two replicas) sharing one Chroma collection of vectors; here an
    embedded Chroma collection stands in for the server's (tests/test_chroma_server.py
    runs the real `chroma run`)."""
    shared = SharedSentences(indexed.store.companion("shared-sentences"), step=2)
    writer = SentenceVectors(tmp_path / "a" / "sentences.sqlite", indexed.embeddings, shared)
    replica = SentenceVectors(tmp_path / "b" / "sentences.sqlite", indexed.embeddings, shared)
    stored = indexed.store.get(indexed.snapshot().lexical.record_ids)
    written = indexed.sentences.of(stored)
    writer.put([s.sentence_key for s in stored], written)

    with caplog.at_level(logging.INFO, logger="rag.sentences"):
        read = replica.of(stored)
    assert "computed" not in caplog.text
    for a, b in zip(read, written, strict=True):
        np.testing.assert_array_equal(a, b)
    assert replica.count() == writer.count() == len({s.sentence_key for s in stored})

    writer.delete({stored[0].sentence_key})
    assert stored[0].sentence_key not in shared.get([stored[0].sentence_key])
