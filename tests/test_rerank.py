"""The optional cross-encoder stage (`RAG_RERANK_MODEL`).

No trained cross-encoder can be had offline here, so these tests build a real, tiny one:
a one-layer BERT sequence classifier with seeded random weights and the bundled e5's
tokenizer, saved as an ordinary CrossEncoder folder and loaded through
sentence-transformers like any site's model. Its scores mean nothing; what is tested is
that the chain pairs the question with each passage, orders by the scores and quotes
from that order, and that a wrong setting is a clear error.
"""

from pathlib import Path

import numpy as np
import pytest

from rag.chain import build_assistant
from rag.config import Settings
from rag.rerank import CrossEncoderReranker
from tests.conftest import CORPUS, run_rag

QUESTION = "飞地项目投产后财政收入怎么分享？"


def tiny_cross_encoder(out: Path, e5_dir: Path, labels: int) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(e5_dir)
    torch.manual_seed(7)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=514,
        num_labels=labels,
        initializer_range=0.5,  # spread the scores: the default init gives near-ties
    )
    BertForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def cross_encoder_dir(e5_dir, tmp_path_factory) -> Path:
    return tiny_cross_encoder(tmp_path_factory.mktemp("tiny-cross-encoder"), e5_dir, 1)


def test_reranker_orders_the_hits_by_its_own_scores(assistant, cross_encoder_dir):
    from sentence_transformers import CrossEncoder

    hits = assistant.retriever.search(QUESTION, 10)
    reranked = CrossEncoderReranker(str(cross_encoder_dir)).rerank(QUESTION, hits)

    scores = CrossEncoder(str(cross_encoder_dir), device="cpu").predict(
        [(QUESTION, h.chunk.text) for h in hits]
    )
    by_id = {h.chunk.chunk_id: float(s) for h, s in zip(hits, scores, strict=True)}
    expected = sorted(by_id, key=lambda cid: -by_id[cid])
    assert [h.chunk.chunk_id for h in reranked] == expected
    assert [h.score for h in reranked] == pytest.approx([by_id[cid] for cid in expected])
    # Not a no-op: these random weights disagree with the retriever's order.
    assert expected != [h.chunk.chunk_id for h in hits]


def test_answers_quote_from_the_reranked_order(corpus_index, cross_encoder_dir):
    plain = build_assistant(Settings(), corpus_index)
    reranking = build_assistant(Settings(rerank_model=str(cross_encoder_dir)), corpus_index)

    answer = reranking.ask(QUESTION)
    expected = CrossEncoderReranker(str(cross_encoder_dir)).rerank(
        QUESTION, plain.retriever.search(QUESTION, 10)
    )
    assert [h.chunk.chunk_id for h in answer.hits] == [h.chunk.chunk_id for h in expected]
    assert "rerank_ms" in answer.timings_ms
    first_k = {h.chunk.chunk_id for h in expected[: reranking.k]}
    assert answer.citations and all(c.chunk_id in first_k for c in answer.citations)
    assert "rerank_ms" not in plain.ask(QUESTION).timings_ms


def test_a_reranker_that_is_not_on_disk_is_one_clear_line(tmp_path, e5_dir):
    env = {"RAG_EMBEDDING_MODEL": str(e5_dir), "RAG_CORPUS_DIR": str(CORPUS)}
    assert run_rag("ingest", env=env).returncode == 0
    missing = tmp_path / "bge-reranker-base"
    result = run_rag("ask", "外资奖励", env={**env, "RAG_RERANK_MODEL": str(missing)})
    assert result.returncode == 1
    assert "does not exist" in result.stderr and str(missing) in result.stderr
    assert "Traceback" not in result.stderr


def test_a_two_label_reranker_is_scored_by_the_probability_of_relevant(tmp_path, e5_dir):
    from sentence_transformers import CrossEncoder

    folder = tiny_cross_encoder(tmp_path / "two-labels", e5_dir, 2)
    texts = ["实际使用外资3227万美元。", "今天天气很好。", "飞地项目前5年按6:4分享。"]
    logits = CrossEncoder(str(folder), device="cpu").predict([(QUESTION, t) for t in texts])
    relevant = np.exp(logits[:, 1]) / np.exp(logits).sum(axis=1)
    scores = CrossEncoderReranker(str(folder)).scores(QUESTION, texts)
    assert scores == pytest.approx(relevant, rel=1e-5)
    assert not np.allclose(scores, logits[:, 1])  # not the raw logit


def test_a_classifier_with_more_labels_is_not_taken_for_a_reranker(tmp_path, e5_dir):
    folder = tiny_cross_encoder(tmp_path / "nli", e5_dir, 3)
    with pytest.raises(RuntimeError, match="has 3 labels"):
        CrossEncoderReranker(str(folder))
