import numpy as np
import pytest

from rag.lexical import LexicalIndex, LexicalRow, bigram_tokens, jaccard

TEXTS = ["明川区楼宇经济办法首年租金补贴50%", "飞地项目投产后奖励60%", "外资到账3227万美元"]
METAS = [
    {"date_int": 20230620, "source": "明川区", "doc_type": "policy", "doc_id": "a", "kb": "楼宇"},
    {"date_int": 20240315, "source": "明川区", "doc_type": "policy", "doc_id": "b", "kb": "飞地"},
    {"date_int": 0, "source": "大众日报", "doc_type": "news", "doc_id": "c", "kb": "新闻"},
]
ROWS = [
    LexicalRow(f"{m['doc_id']}#0@1", f"{m['doc_id']}#0", text, m)
    for text, m in zip(TEXTS, METAS, strict=True)
]


def test_bigrams_keep_numbers_and_latin_words_whole():
    assert bigram_tokens("外资3227万美元，增长88.6%") == [
        "外资",
        "3227",
        "万美",
        "美元",
        "增长",
        "88.6%",
    ]
    assert bigram_tokens("RCEP生效") == ["rcep", "生效"]
    assert bigram_tokens("省") == ["省"]


def test_scores_rank_the_matching_chunk_first_and_masks_exclude():
    index = LexicalIndex.build(ROWS)
    top = index.top(index.scores("飞地奖励"), 3)
    assert top[0][0] == "b#0" and len(top) == 1  # only positive scores
    masked = index.scores("飞地奖励", np.array([True, False, True]))
    assert masked[1] == 0
    assert index.idf("飞地") > index.idf("不存在的词") or index.idf("不存在的词") > 0


def test_coverage_is_the_idf_weighted_share_of_the_questions_bigrams_each_row_holds():
    index = LexicalIndex.build(ROWS)
    question = "飞地项目奖励多少"  # 飞地 地项 项目 目奖 奖励 励多 多少
    idf = {t: index.idf(t) for t in set(bigram_tokens(question))}
    held = {"飞地", "地项", "项目", "奖励"}  # in row b; the rest in no row
    expected = sum(idf[t] for t in held) / sum(idf.values())
    np.testing.assert_allclose(index.coverage(question), [0, expected, 0], rtol=1e-6)
    assert index.coverage("").tolist() == [0, 0, 0]
    assert LexicalIndex.build([]).coverage("飞地").size == 0
    loaded_twice = index.coverage("飞地？飞地")  # a bigram counts once
    np.testing.assert_allclose(loaded_twice, index.coverage("飞地"))


def test_save_and_load_round_trip(tmp_path):
    index = LexicalIndex.build(ROWS)
    index.save(tmp_path / "g7")
    loaded = LexicalIndex.load(tmp_path / "g7")
    assert loaded.chunk_ids == index.chunk_ids and loaded.record_ids == index.record_ids
    np.testing.assert_allclose(loaded.scores("外资美元"), index.scores("外资美元"))
    assert loaded.fields["source"].tolist() == ["明川区", "明川区", "大众日报"]
    assert loaded.fields["source"].among(np.array([False, True, True])) == ["大众日报", "明川区"]
    assert loaded.fields["kb"].isin(["飞地", "新闻"]).tolist() == [False, True, True]
    assert LexicalIndex.load(tmp_path / "nothing") is None


def test_near_identical_texts_have_high_bigram_jaccard():
    def sim(a, b):
        return jaccard(set(bigram_tokens(a)), set(bigram_tokens(b)))

    assert sim("全区实际使用外资3227万美元。", "全区实际使用外资3227万美元！") == 1.0
    assert sim("全区实际使用外资3227万美元。", "飞地园区厂房租金补贴40%。") < 0.1


def test_the_next_generation_drops_replaced_documents_and_adds_new_rows():
    index = LexicalIndex.build(ROWS)
    fresh = LexicalRow("b#0@2", "b#0", "飞地项目奖励70%", {**METAS[1]})
    derived = index.derive({"b"}, [fresh])
    assert sorted(derived.record_ids) == ["a#0@1", "b#0@2", "c#0@1"]
    assert index.record_ids == ["a#0@1", "b#0@1", "c#0@1"]  # the old one is untouched
    assert derived.top(derived.scores("奖励70%"), 1)[0][0] == "b#0"
    assert derived.fields["kb"].tolist() == ["楼宇", "新闻", "飞地"]


CLAUSES = [
    "第七条 飞地项目投产后，前5年税收按6:4分成，第6年起按5:5分成。",
    "第八条 对新引进的世界500强企业区域总部，给予一次性奖励500万元。",
    "楼宇经济 首年按实际租金的50%给予补贴，次年按30%给予补贴。",
    "外资到账3227万美元，同比增长88.6%。外资到账奖励按到账金额的1%给予。",
    "",  # a chunk with no indexable text
    "RCEP生效后，飞地园区出口企业享受关税减让。",
]


def rows_of(texts, doc_prefix="d"):
    return [
        LexicalRow(
            f"{doc_prefix}{i}#0@1",
            f"{doc_prefix}{i}#0",
            t,
            {**METAS[0], "doc_id": f"{doc_prefix}{i}"},
        )
        for i, t in enumerate(texts)
    ]


def test_scores_are_bm25s_lucene_scores_over_the_same_bigrams():
    """The matrix is built here (vectorised) instead of by bm25s: it must score as
    bm25s does, repeated query bigrams included."""
    import bm25s

    index = LexicalIndex.build(rows_of(CLAUSES))
    reference = bm25s.BM25()  # method lucene, k1 1.5, b 0.75
    reference.index([bigram_tokens(t) for t in CLAUSES], show_progress=False)
    for query in ["飞地项目税收怎么分成", "外资到账奖励", "补贴补贴50%", "RCEP 关税", "无关的问题"]:
        tokens = [t for t in bigram_tokens(query) if t in reference.vocab_dict]
        expected = reference.get_scores(tokens) if tokens else np.zeros(len(CLAUSES))
        np.testing.assert_allclose(index.scores(query), expected, rtol=1e-5, atol=1e-6)
        assert index.idf("飞地") == pytest.approx(np.log(1 + (6 - 2 + 0.5) / (2 + 0.5)))


def test_an_incremental_update_scores_as_a_build_of_the_same_rows():
    """`derive` tokenises only the new rows and keeps the old rows' token ids: the result
    must be the index a full build of the same rows gives (same scores, coverage, idf)."""
    first = LexicalIndex.build(rows_of(CLAUSES[:4]))
    added = rows_of(CLAUSES[4:], doc_prefix="n")
    derived = first.derive({"d1", "d3"}, added)
    rebuilt = LexicalIndex.build(
        [r for r in rows_of(CLAUSES[:4]) if r.fields["doc_id"] not in {"d1", "d3"}] + added
    )
    assert derived.chunk_ids == rebuilt.chunk_ids == ["d0#0", "d2#0", "n0#0", "n1#0"]
    for query in ["飞地项目税收怎么分成", "世界500强总部奖励", "租金补贴", "RCEP关税"]:
        np.testing.assert_allclose(derived.scores(query), rebuilt.scores(query), rtol=1e-6)
        np.testing.assert_allclose(derived.coverage(query), rebuilt.coverage(query), rtol=1e-6)
    assert derived.idf("飞地") == pytest.approx(rebuilt.idf("飞地"))
    assert derived.top(derived.scores("世界500强"), 3) == []  # its only row was dropped
    assert first.top(first.scores("世界500强"), 1)[0][0] == "d1#0"  # the old index is intact


def test_a_saved_index_is_mapped_not_read(tmp_path):
    index = LexicalIndex.build(rows_of(CLAUSES))
    index.save(tmp_path / "g1")
    loaded = LexicalIndex.load(tmp_path / "g1")
    assert isinstance(loaded.counts, np.memmap) and isinstance(loaded.indices, np.memmap)
    np.testing.assert_allclose(loaded.scores("飞地税收分成"), index.scores("飞地税收分成"))
    grown = loaded.derive({"d0"}, rows_of(["第九条 新的条款：飞地税收另行约定。"], doc_prefix="x"))
    assert grown.top(grown.scores("飞地税收另行约定"), 1)[0][0] == "x0#0"
    (tmp_path / "g1" / "lexical.json").write_text('{"tokens": "bigram-v2", "rows": []}')
    assert LexicalIndex.load(tmp_path / "g1") is None  # another format: rebuilt, not misread


def test_many_updates_in_a_row_keep_the_columns_a_build_would_have():
    """Random drops and additions, ten generations deep (seeded): every column must hold
    the same rows, counts and scores as a build of the surviving rows."""
    rng = np.random.default_rng(7)
    pieces = [c for c in CLAUSES if c] + [
        "第十条 本办法由区商务局负责解释。",
        "外资企业 研发中心 奖励",
    ]
    index, live = LexicalIndex.build([]), []
    for generation in range(10):
        drop = {r.fields["doc_id"] for r in live if rng.random() < 0.3}
        new = [
            LexicalRow(
                f"g{generation}d{j}#0@{generation}",
                f"g{generation}d{j}#0",
                "".join(rng.choice(pieces, size=int(rng.integers(1, 4)))),
                {**METAS[0], "doc_id": f"g{generation}d{j}"},
            )
            for j in range(int(rng.integers(0, 4)))
        ]
        index = index.derive(drop, new)
        live = [r for r in live if r.fields["doc_id"] not in drop] + new
        built = LexicalIndex.build(live)
        assert index.chunk_ids == built.chunk_ids
        for token, tid in built.vocab.items():
            ours = index.vocab[token]
            a, b = index.indptr[ours], index.indptr[ours + 1]
            c, d = built.indptr[tid], built.indptr[tid + 1]
            assert index.indices[a:b].tolist() == built.indices[c:d].tolist(), token
            assert index.counts[a:b].tolist() == built.counts[c:d].tolist(), token
        assert index.lengths.tolist() == built.lengths.tolist()
        for query in ["飞地税收分成", "外资企业研发中心奖励", "第十条"]:
            np.testing.assert_allclose(index.scores(query), built.scores(query), rtol=1e-6)
