"""Which article a place in a policy belongs to, which one a question names (rag.articles)."""

import pytest

from rag.articles import article_at, asked_article, chinese_number, normalized

POLICY = "第一章 总则\n第一条 为促进发展，制定本办法。\n第二条 本办法适用于本区。\n所称企业，是指……\n第十二条 评审按程序进行。"


@pytest.mark.parametrize(
    ("n", "written"),
    [
        (1, "一"),
        (10, "十"),
        (12, "十二"),
        (20, "二十"),
        (35, "三十五"),
        (105, "一百零五"),
        (112, "一百一十二"),
    ],
)
def test_numbers_are_written_as_article_headings_write_them(n, written):
    assert chinese_number(n) == written


def test_a_place_belongs_to_the_last_article_opened_before_it():
    assert article_at(POLICY, POLICY.index("为促进")) == "第一条"
    assert article_at(POLICY, POLICY.index("所称企业")) == "第二条"  # a later line of 第二条
    assert article_at(POLICY, POLICY.index("评审")) == "第十二条"
    assert article_at(POLICY, 0) == ""  # 第一章 is a chapter, not an article
    tail = POLICY[POLICY.index("所称") :]
    assert article_at(tail, 0, before="第二条") == "第二条"  # a chunk cut mid-article
    assert article_at("依照第五条的规定办理。", 5) == ""  # a reference inside a sentence
    assert article_at("符合第四条、第五条规定的。", 9) == ""
    joined = "第二条 适用于本区。 第三条 各市应当推行。"  # lines joined by a space
    assert article_at(joined, joined.index("各市")) == "第三条"


def test_a_question_names_an_article_in_either_numerals():
    assert asked_article("第十二条怎么规定的？") == "第十二条"
    assert asked_article("楼宇经济政策第12条说了什么") == "第十二条"
    assert asked_article("第七条和第九条有什么区别") is None  # two: a comparison
    assert asked_article("租金补贴多少？") is None
    assert normalized("第 3 条") == "第三条"


def test_headings_say_which_article_is_in_force_and_a_passage_covers_its_own():
    from rag.articles import covers, headings, in_force

    starts = headings(POLICY)
    assert [name for _, name in starts] == ["第一条", "第二条", "第十二条"]
    assert in_force(starts, POLICY.index("所称企业")) == "第二条" and in_force(starts, 0) == ""
    assert covers("所称企业，是指……", "第二条", "第二条")  # begins inside it
    assert covers("前文。\n第十二条 评审按程序进行。", "第二条", "第十二条")
    assert not covers("依照第十二条办理。", "第二条", "第十二条")


def test_a_question_naming_an_article_is_answered_with_that_article(assistant):
    """From the named policy (six policies have a 第七条), the article as it reads."""
    answer = assistant.ask("飞地经济政策第七条是怎么规定的？").to_json()
    assert answer["answer"].startswith("第七条 飞地项目投产后")
    assert "6:4" in answer["answer"] and "从其约定" in answer["answer"]
    assert {(c["doc_id"], c["article"]) for c in answer["citations"]} == {
        ("policies/enclave-economy.md", "第七条")
    }
    digits = assistant.ask("外资奖励办法第9条讲的什么").to_json()
    assert digits["answer"].startswith("第九条") and "600万元" in digits["answer"]
    assert digits["citations"][0]["article"] == "第九条"


def test_a_citation_names_the_article_and_page_of_the_sentence_it_quotes():
    from rag.types import Chunk, Citation, Hit

    text = "所称企业，是指在本区纳税的企业。\n第十二条 飞地项目前3年按60%给予奖励。"
    meta = {"title": "飞地政策", "article": "第十一条", "page": "3", "page_breaks": "17"}
    hit = Hit(Chunk("d#4", "d", 4, text, 900, 900 + len(text), meta), 1.0)
    later = Citation.of(1, hit, ("第十二条 飞地项目前3年按60%给予奖励。",))
    assert (later.article, later.page) == ("第十二条", 4)
    earlier = Citation.of(1, hit, ("所称企业，是指在本区纳税的企业。",))
    assert (earlier.article, earlier.page) == ("第十一条", 3)  # begun before the chunk
    plain = Citation.of(1, Hit(Chunk("n#0", "n", 0, "新闻。", 0, 3, {}), 1.0), ("新闻。",))
    assert (plain.article, plain.page) == (None, None)
