"""Grounding checks on generated answers: pure functions, Chinese examples inline."""

from rag.grounding import (
    MarkerStream,
    check,
    figures,
    says_not_covered,
    sentence_spans,
    strip_unknown_markers,
    supporting_sentences,
)

PASSAGES = {
    1: "上半年,全区实际使用外资3227万美元,同比增长88.6%。",
    2: "本办法自2025年2月1日起施行，有效期3年。对新引进企业给予最高1,000万元奖励。",
}


def test_figures_are_dates_numbers_percentages_and_amounts():
    assert figures("自2025年2月1日起，奖励1,000万元，占比12.5%，共3项[2]。") == [
        "2025年2月1日",
        "1000万",
        "12.5%",
        "3",
    ]
    # One spelling each: full-width, ISO dates, leading zeros, Chinese-numeral amounts.
    assert figures("补贴５０％，2024-04-01起，2024年04月至今") == [
        "50%",
        "2024年4月1日",
        "2024年4月",
    ]
    assert figures("最高五百万元，提高百分之五十，另加一点五个百分点") == [
        "五百万元",
        "百分之五十",
        "一点五个百分点",
    ]
    assert figures("一次性奖励，十分重要") == []  # Chinese numerals without an amount unit


def test_figures_must_be_in_a_passage_the_sentence_cites():
    checked = check(
        "实际使用外资3227万美元[1]。本办法自2025年2月1日起施行[2]。增长88.6%[2]。"
        "最高奖励1000万元[2]。有效期5年[2]。",
        PASSAGES,
    )
    # 88.6% is in passage 1, but the sentence cites 2; "5年" is in no passage.
    assert checked.unverified == ["增长88.6%。", "有效期5年。"]
    assert checked.cited == [1, 2]


def test_a_sentence_that_cites_nothing_verifies_nothing():
    assert check("实际使用外资3227万美元。", PASSAGES).unverified == ["实际使用外资3227万美元。"]
    assert check("详见相关办法[1]。", PASSAGES).unverified == []


def test_markers_after_the_end_mark_belong_to_their_sentence():
    checked = check("实际使用外资3227万美元。[1]有效期3年。[2]", PASSAGES)
    assert checked.unverified == [] and checked.cited == [1, 2]


def test_unknown_markers_are_removed_and_known_ones_kept():
    assert strip_unknown_markers("甲[1]乙[9][2]丙[0]", {1, 2, 3}) == "甲[1]乙[2]丙"
    checked = check("同比增长88.6%[9]。", PASSAGES)
    assert checked.text == "同比增长88.6%。" and checked.cited == []


def test_markers_split_across_streamed_pieces_are_filtered_whole():
    stream = MarkerStream({1, 2, 3})
    pieces = ["增长88.6%", "[", "1", "]。另有", "[1", "2]说明[", "3]", "[2"]
    out = "".join(stream.feed(p) for p in pieces) + stream.flush()
    assert out == "增长88.6%[1]。另有说明[3][2"  # a marker never closed is just text
    assert stream.feed("见[1]") == "见[1]"


def test_not_covered_phrasings_are_recognised():
    assert says_not_covered("提供的资料中没有提及土地价格。")
    assert says_not_covered("根据现有资料无法确定。")
    assert not says_not_covered("上半年实际使用外资3227万美元[1]。")


def test_supporting_sentences_are_those_holding_the_cited_figures():
    answer = "有效期3年[2]。最高奖励1000万元[2]，增长88.6%[1]。"
    assert supporting_sentences(answer, 2, PASSAGES[2]) == (
        "本办法自2025年2月1日起施行，有效期3年。",
        "对新引进企业给予最高1,000万元奖励。",
    )
    assert supporting_sentences(answer, 1, PASSAGES[1]) == (PASSAGES[1],)
    assert supporting_sentences("详见办法[2]。", 2, PASSAGES[2]) == ()


def test_figures_are_compared_in_one_spelling():
    passages = {
        1: "本办法自2024年4月1日起施行。分别奖励100，200，300万元。",
        2: "施行日期：2024-04-01。租金补贴50%。",
    }
    checked = check(
        "自2024年4月起施行[1]。施行日期为2024年4月1日[2]。分别奖励100、200、300万元[1]。补贴５０％[2]。",
        passages,
    )
    assert checked.unverified == []
    assert check("补贴五百万元[1]。", passages).unverified == ["补贴五百万元。"]
    assert check("补贴５０％[1]。", {1: "补贴50万元。"}).unverified == ["补贴５０％。"]


def test_a_clause_after_a_semicolon_shares_its_sentence_marker():
    passage = {1: "企业补贴50万元；单个企业最高100万元。"}
    assert check("企业补贴50万元；最高100万元[1]。", passage).unverified == []


def test_answer_sentences_keep_clauses_and_markers_together():
    """rag.split's sentences, without the cut at ；or …, each with its markers."""
    text = "租金补贴50%……最高100万元[1]。他说：“补贴30%。”[2]A。[1][2]。"
    assert [text[a:b] for a, b in sentence_spans(text)] == [
        "租金补贴50%……最高100万元[1]。",
        "他说：“补贴30%。”[2]",
        "A。[1][2]。",
    ]
