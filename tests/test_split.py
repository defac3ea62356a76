import itertools

import pytest

from rag.split import chunk_spans, sentence_spans, split_sentences, with_title

TEXT = (
    "第一条 为促进楼宇经济发展，制定本办法。第二条 本办法适用于全区商务楼宇。"
    "第三条 对新引进企业给予奖励，最高500万元；对总部企业另行支持！"
    "第四条 实际使用内资99.99亿元。\n第五条 本办法自2024年1月1日起施行。"
)


def test_sentences_end_at_chinese_marks_keep_closing_quotes_and_not_at_decimals():
    assert split_sentences("他说：“好。”然后走了！数字99.99亿元；最后…\n新行") == [
        "他说：“好。”",
        "然后走了！",
        "数字99.99亿元；",
        "最后…",
        "新行",
    ]


def test_sentence_offsets_are_exact():
    for span in sentence_spans(TEXT):
        assert TEXT[span.start : span.end].strip() == TEXT[span.start : span.end]


@pytest.mark.parametrize(("size", "overlap"), [(40, 0), (40, 15), (80, 30), (300, 60)])
def test_chunks_respect_size_cover_the_text_and_break_between_sentences(size, overlap):
    spans = chunk_spans(TEXT, size, overlap)
    assert all(s.end - s.start <= size for s in spans)
    covered = set()
    for s in spans:
        covered.update(range(s.start, s.end))
    non_space = {i for i, ch in enumerate(TEXT) if not ch.isspace()}
    assert non_space <= covered
    ends = {s.end for s in sentence_spans(TEXT)}
    assert all(s.end in ends for s in spans)


NEWS = (
    "莱芜区上半年实际使用外资3227万美元。同比增长88.6%，完成率全市第二。"
    "实际使用制造业外资3058万美元。招商引资项目实际使用内资99.99亿元！"
    "签约项目23个，总投资超过百亿元。"
)


def test_consecutive_chunks_overlap_by_whole_sentences_within_budget():
    spans = chunk_spans(NEWS, 40, 25)
    starts = {s.start for s in sentence_spans(NEWS)}
    shared = []
    for a, b in itertools.pairwise(spans):
        assert b.start > a.start and b.start in starts
        shared.append(max(0, a.end - b.start))
    assert all(n <= 25 for n in shared)
    assert any(n > 0 for n in shared)  # the overlap really happens


def test_a_provision_starts_a_chunk_once_the_chunk_is_half_full_and_carries_no_overlap():
    chunks = [TEXT[s.start : s.end] for s in chunk_spans(TEXT, 60, 25)]
    assert chunks == [
        "第一条 为促进楼宇经济发展，制定本办法。第二条 本办法适用于全区商务楼宇。",
        "第三条 对新引进企业给予奖励，最高500万元；对总部企业另行支持！",
        "第四条 实际使用内资99.99亿元。\n第五条 本办法自2024年1月1日起施行。",
    ]
    # a short first provision does not make a chunk of its own: 第一条 is under half of 80
    assert chunk_spans(TEXT, 80, 0)[0].end > TEXT.index("第二条")


def test_sentence_longer_than_chunk_is_split_at_commas():
    long = "这是一个很长的句子，它没有句号，但是有很多逗号，用来测试超长句子的切分，确保不会超过大小限制"
    spans = chunk_spans(long, 20, 0)
    assert all(s.end - s.start <= 20 for s in spans)
    assert "".join(long[s.start : s.end] for s in spans) == long
    assert all(long[s.end - 1] == "，" for s in spans[:-1])


def test_overlap_must_be_smaller_than_size():
    with pytest.raises(ValueError, match="overlap"):
        chunk_spans(TEXT, 50, 50)


def test_a_chunk_is_indexed_with_its_document_title_in_front_unless_it_starts_with_it():
    title = "明川区飞地经济政策"
    assert with_title("第七条 税收前5年按6:4分成。", title) == (
        "明川区飞地经济政策\n第七条 税收前5年按6:4分成。",
        len(title) + 1,
    )
    assert with_title("明川区飞地经济政策 第一条 为促进…", title) == (
        "明川区飞地经济政策 第一条 为促进…",
        0,
    )
    assert with_title("第七条 税收分成。", "") == ("第七条 税收分成。", 0)
