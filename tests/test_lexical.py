import numpy as np

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
