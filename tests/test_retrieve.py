import itertools

import numpy as np
from langchain_core.documents import Document

from rag.index import Filters
from rag.ingest import ingest
from rag.retrieve import (
    FusionWeights,
    HybridRetriever,
    Mode,
    about_other_years,
    fuse,
    interleave,
)
from rag.types import Chunk, Hit

SEED = "news/2022-08-04-laiwu-signing.txt"


def test_fuse_adds_best_sentence_and_scaled_bm25():
    scores = fuse(
        np.array([0.9, 0.8]),
        np.array([0.9, 0.95]),
        np.array([10.0, 5.0]),
        FusionWeights(chunk=1, sentence=1, lexical=0.1),
    )
    np.testing.assert_allclose(scores, [1.8 + 0.1, 1.75 + 0.05])


def test_fuse_without_lexical_matches_is_dense_only():
    scores = fuse(np.array([0.9]), np.array([0.8]), np.array([0.0]), FusionWeights())
    np.testing.assert_allclose(scores, [1.7])


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


def test_it_is_a_langchain_retriever(corpus_index):
    docs = HybridRetriever(index=corpus_index, k=2).invoke("莱芜区上半年实际使用外资多少？")
    assert len(docs) == 2 and all(isinstance(d, Document) for d in docs)
    assert docs[0].metadata["doc_id"] == SEED and docs[0].id == docs[0].metadata["chunk_id"]


def test_date_filters_treat_undated_documents_alike_in_both_retrievers():
    """Lexical mask and Chroma `where` must agree, undated chunks included."""
    fields = {
        "date_int": np.array([0, 20220804, 20240315]),
        "source": np.array(["", "大众日报", "明川区"]),
        "doc_type": np.array(["", "news", "policy"]),
        "doc_id": np.array(["a", "b", "c"]),
    }
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
