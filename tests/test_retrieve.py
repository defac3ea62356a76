import itertools

import numpy as np
import pytest
from langchain_core.documents import Document

from rag.index import Filters
from rag.ingest import ingest
from rag.lexical import LexicalIndex, LexicalRow
from rag.retrieve import (
    FusionWeights,
    HybridRetriever,
    Mode,
    about_other_years,
    document_margin,
    fuse,
    interleave,
)
from rag.types import Chunk, Hit

SEED = "news/2022-08-04-laiwu-signing.txt"


def test_document_margin_counts_each_document_once_by_its_best_chunk():
    docs = ["a", "a", "a", "b", "c"]
    values = np.array([0.9, 0.85, 0.8, 0.3, 0.1])
    assert document_margin(docs, values, k=3) == pytest.approx(0.8)
    assert document_margin(docs, values, k=5) == pytest.approx(0.8)  # fewer than k: the last
    assert document_margin([], np.zeros(0)) == 0.0


def test_coverage_counts_only_when_it_singles_out_a_document():
    chunk = np.array([0.8, 0.8, 0.8, 0.8, 0.8, 0.8])
    sentence = np.array([0.9, 0.9, 0.9, 0.9, 0.9, 0.9])
    weights = FusionWeights(coverage=1.0, margin_low=0.1, margin_high=0.6)
    docs = ["a", "b", "c", "d", "e", "f"]
    # one document covers the question, the others hardly: full weight
    decisive = fuse(chunk, sentence, np.array([0.9, 0.2, 0.1, 0.1, 0.1, 0.0]), docs, weights)
    np.testing.assert_allclose(decisive, 1.7 + np.array([0.9, 0.2, 0.1, 0.1, 0.1, 0.0]))
    # every candidate shares the question's words (same-topic news): words do not count
    flat = fuse(chunk, sentence, np.array([0.7, 0.68, 0.66, 0.65, 0.64, 0.6]), docs, weights)
    np.testing.assert_allclose(flat, np.full(6, 1.7))
    # in between: a part of the weight (margin 0.35 → half)
    half = fuse(chunk, sentence, np.array([0.6, 0.5, 0.4, 0.3, 0.25, 0.0]), docs, weights)
    np.testing.assert_allclose(half, 1.7 + 0.5 * np.array([0.6, 0.5, 0.4, 0.3, 0.25, 0.0]))


def test_hybrid_finds_the_seed_article_for_its_figure(corpus_index):
    hits = HybridRetriever(index=corpus_index).search("莱芜区上半年实际使用外资多少？", 5)
    assert hits[0].chunk.doc_id == SEED
    assert "3227万美元" in hits[0].chunk.text
    assert len(hits) == 5 and len({h.chunk.chunk_id for h in hits}) == 5
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))
    assert hits[0].sentence_spans and len(hits[0].sentence_spans) == len(hits[0].sentence_scores)


def test_each_mode_ranks_by_its_own_signal(corpus_index):
    question = "写字楼租金补贴比例"
    dense = HybridRetriever(index=corpus_index, mode=Mode.DENSE).search(question, 3)
    lexical = HybridRetriever(index=corpus_index, mode=Mode.LEXICAL).search(question, 3)
    assert [h.dense_rank for h in dense] == [1, 2, 3]
    assert [h.lexical_rank for h in lexical] == [1, 2, 3]


def test_date_source_and_document_filters_apply_to_both_retrievers(corpus_index):
    retriever = HybridRetriever(index=corpus_index)
    question = "实际使用外资多少"
    since_2023 = retriever.search(question, 10, Filters(since="2023-01-01"))
    assert since_2023 and all(h.chunk.meta["date"] >= "2023-01-01" for h in since_2023)
    until_2022 = retriever.search(question, 10, Filters(until="2022-12-31"))
    assert until_2022 and {h.chunk.doc_id for h in until_2022} == {SEED}
    news_only = retriever.search(question, 10, Filters(source="大众日报"))
    assert {h.chunk.meta["source"] for h in news_only} == {"大众日报"}
    without_seed = retriever.search(question, 10, Filters(exclude_docs=frozenset({SEED})))
    assert without_seed and SEED not in {h.chunk.doc_id for h in without_seed}
    assert retriever.search(question, 5, Filters(source="不存在的来源")) == []


def test_near_duplicate_chunks_are_returned_once(index, tmp_path):
    folder = tmp_path / "near"
    folder.mkdir()
    body = "第三条 对新入驻重点楼宇的企业，按实际租金的50%给予第一年补贴，最高100万元。"
    (folder / "a.txt").write_text("甲区楼宇政策\n" + body, "utf-8")
    (folder / "b.txt").write_text("乙区楼宇政策\n" + body.replace("。", "！"), "utf-8")
    (folder / "c.txt").write_text(
        "飞地政策\n第五条 飞地项目投产后三年内按区级财政贡献的60%给予奖励。", "utf-8"
    )
    ingest([folder], index, 300, 60)
    hits = HybridRetriever(index=index).search("楼宇租金补贴多少", 3)
    texts = [h.chunk.text for h in hits]
    assert sum(body[:20] in t for t in texts) == 1
    kept = next(h for h in hits if body[:20] in h.chunk.text)
    copy = "b.txt" if kept.chunk.doc_id.endswith("a.txt") else "a.txt"
    assert [d.rsplit("/", 1)[-1] for d in kept.also_in] == [copy]  # where else it is published


def test_it_is_a_langchain_retriever(corpus_index):
    docs = HybridRetriever(index=corpus_index, k=2).invoke("莱芜区上半年实际使用外资多少？")
    assert len(docs) == 2 and all(isinstance(d, Document) for d in docs)
    assert docs[0].metadata["doc_id"] == SEED and docs[0].id == docs[0].metadata["chunk_id"]


def test_date_filters_treat_undated_documents_alike_in_both_retrievers():
    """Lexical mask and Chroma `where` must agree, undated chunks included."""
    fields = LexicalIndex.build(
        [
            LexicalRow(f"{doc_id}#0@1", f"{doc_id}#0", "正文", meta | {"doc_id": doc_id})
            for doc_id, meta in zip(
                "abc",
                [
                    {"date_int": 0, "source": "", "doc_type": ""},
                    {"date_int": 20220804, "source": "大众日报", "doc_type": "news"},
                    {"date_int": 20240315, "source": "明川区", "doc_type": "policy"},
                ],
                strict=True,
            )
        ]
    )
    until = Filters(until="2023-12-31")
    assert until.mask(fields).tolist() == [False, True, False]
    assert {"date_int": {"$gt": 0}} in until.chroma_clauses()
    assert Filters(since="2023-01-01").mask(fields).tolist() == [False, False, True]
    assert Filters(doc_type="news").mask(fields).tolist() == [False, True, False]
    assert Filters(exclude_docs=frozenset({"b"})).mask(fields).tolist() == [True, False, True]
    assert Filters().chroma_clauses() == [] and not Filters()


def test_a_chunk_about_another_year_is_recognised():
    question = "2022年考研报名人数是多少"
    assert about_other_years("2023年考研报名人数约474万人。", question)
    assert not about_other_years("2022年考研报名人数457万，比2021年增加80万。", question)
    assert not about_other_years("考研报名人数再创新高。", question)  # names no year
    assert not about_other_years("2023年考研报名人数约474万人。", "考研报名人数是多少")
    assert not about_other_years("编号20231号文件", question)  # not a year: more digits


def test_interleave_takes_each_search_in_turn_and_each_chunk_once():
    def hits(*ids):
        return [Hit(Chunk(i, i.split("#")[0], 0, i, 0, 1), 1.0) for i in ids]

    merged = interleave([hits("a#0", "b#0", "c#0"), hits("d#0", "a#0"), hits()])
    assert [h.chunk.chunk_id for h in merged] == ["a#0", "d#0", "b#0", "c#0"]


def test_a_clause_deep_in_a_policy_is_found_by_the_policy_title_it_does_not_repeat(index, tmp_path):
    """The title is in front of every chunk as the index reads it, not in the chunk."""
    folder = tmp_path / "policies"
    folder.mkdir()
    preamble = "".join(  # distinct clauses: repeated paragraphs are dropped when cleaning
        f"第{n}条 本区{topic}工作由有关部门按照职责分工负责，具体办法另行制定。\n"
        for n, topic in zip(
            "一二三四五六", ["规划", "用地", "环保", "统计", "安全", "人才"], strict=True
        )
    )
    (folder / "enclave.txt").write_text(
        "明川区飞地经济合作办法\n" + preamble + "第七条 税收前5年按6:4分成，第6年起按5:5分成。",
        "utf-8",
    )
    (folder / "tower.txt").write_text(
        "明川区楼宇经济扶持办法\n" + preamble + "第七条 税收前3年全额返还，之后按7:3分成。",
        "utf-8",
    )
    ingest([folder], index, 120, 0)
    for mode in (Mode.LEXICAL, Mode.DENSE):
        best = HybridRetriever(index=index, mode=mode).search("飞地经济合作办法的税收怎么分成", 1)[
            0
        ]
        assert best.chunk.doc_id.endswith("enclave.txt") and best.chunk.index > 0, mode
        assert "6:4分成" in best.chunk.text and "明川区" not in best.chunk.text  # no title in it
