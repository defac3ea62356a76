import numpy as np

from rag.lexical import LexicalIndex, bigram_tokens, jaccard

TEXTS = ["明川区楼宇经济办法首年租金补贴50%", "飞地项目投产后奖励60%", "外资到账3227万美元"]
METAS = [
    {"date_int": 20230620, "source": "明川区", "doc_type": "policy", "doc_id": "a"},
    {"date_int": 20240315, "source": "明川区", "doc_type": "policy", "doc_id": "b"},
    {"date_int": 0, "source": "大众日报", "doc_type": "news", "doc_id": "c"},
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
    index = LexicalIndex.build(["a#0", "b#0", "c#0"], TEXTS, METAS)
    top = index.top(index.scores("飞地奖励"), 3)
    assert top[0][0] == "b#0" and len(top) == 1  # only positive scores
    masked = index.scores("飞地奖励", np.array([True, False, True]))
    assert masked[1] == 0
    assert index.idf("飞地") > index.idf("不存在的词") or index.idf("不存在的词") > 0


def test_save_and_load_round_trip_with_stamp(tmp_path):
    index = LexicalIndex.build(["a#0", "b#0", "c#0"], TEXTS, METAS)
    index.save(tmp_path / "lex", {"generation": 7})
    loaded, stamp = LexicalIndex.load(tmp_path / "lex")
    assert stamp == {"generation": 7}
    assert loaded.chunk_ids == index.chunk_ids
    np.testing.assert_allclose(loaded.scores("外资美元"), index.scores("外资美元"))
    assert loaded.fields["source"].tolist() == ["明川区", "明川区", "大众日报"]
    assert LexicalIndex.load(tmp_path / "nothing") is None


def test_near_identical_texts_have_high_bigram_jaccard():
    def sim(a, b):
        return jaccard(set(bigram_tokens(a)), set(bigram_tokens(b)))

    assert sim("全区实际使用外资3227万美元。", "全区实际使用外资3227万美元！") == 1.0
    assert sim("全区实际使用外资3227万美元。", "飞地园区厂房租金补贴40%。") < 0.1
