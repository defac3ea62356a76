"""Questions that compare several things at once (“A和B…分别是多少”), split into one
question per thing, so each gets its own retrieval and its own sentences.

One question vector for “飞地政策和外资奖励办法，提交申请后分别多少个工作日内审核完？” lands
between the two documents and the answer quotes one of them; asked separately, each
document comes first for its own question (project set: 3 of the 4 such questions the
single-question answer missed, bench/README.md). Splitting needs word boundaries, which
Chinese does not mark, so this uses jieba's segmenter and part-of-speech tags.
"""

from __future__ import annotations

import re

_COMPARISON = re.compile(r"分别|各自|各(?=是|为|有|多少|几|占|按|能|可)")
_CONJUNCTIONS = {"和", "与", "跟", "及", "以及", "、"}
_PUNCTUATION = set("，,。；;？?！!：:")
_ITEM_WORDS = (2, 40)  # characters an item may have; anything else is a misparse


def _ends_item(word: str, flag: str) -> bool:
    """Words that cannot be part of a compared item: 的/对, punctuation, numbers and time
    words (shared by every item: “北京和上海2021年的GDP”), particles."""
    return (
        word in {"的", "对", "之", "分别", "各", "各自"}
        or word in _PUNCTUATION
        or flag[:1] in ("m", "t", "u", "x")
    )


def split_comparison(question: str) -> list[str]:
    """One question per compared item, each with the question's shared context, or
    `[question]` when it does not compare or cannot be split with confidence.

    >>> split_comparison("北京和上海2021年的GDP分别是多少？")
    ['北京2021年的GDP是多少？', '上海2021年的GDP是多少？']
    """
    marker = _COMPARISON.search(question)
    if not marker:
        return [question]
    import jieba.posseg  # ~1 s to load its dictionary: only for questions that compare

    jieba.setLogLevel(60)
    tokens = [(t.word, t.flag) for t in jieba.posseg.cut(question[: marker.start()])]
    words = [w for w, _ in tokens]
    joins = [i for i, w in enumerate(words) if w in _CONJUNCTIONS and 0 < i < len(words) - 1]
    if not joins:
        return [question]
    # The last item runs from the last conjunction to a word that cannot belong to it, or
    # to a preposition after its first word (“楼宇企业|按区级经济贡献奖励”; “在飞地园区…”
    # may start with one).
    end = joins[-1] + 1
    while end < len(tokens) and not _ends_item(*tokens[end]):
        end += 1
        if end < len(tokens) and tokens[end][1] == "p":
            break
    # The first item reaches back to such a word — or, after “，和”, is the whole clause
    # before the comma (“A的租金补贴，和B的补贴比例，各是多少”).
    first = joins[0]
    i = first - 1
    if words[i] in _PUNCTUATION:
        i -= 1
        while i >= 0 and words[i] not in _PUNCTUATION:
            i -= 1
        start, first_end = i + 1, first - 1
    else:
        while i >= 0 and not _ends_item(*tokens[i]):
            i -= 1
        start, first_end = i + 1, first
    bounds = [(start, first_end)] + [
        (a + 1, b) for a, b in zip(joins, [*joins[1:], end], strict=True)
    ]
    items = ["".join(words[a:b]) for a, b in bounds]
    if any(not _ITEM_WORDS[0] <= len(item) <= _ITEM_WORDS[1] for item in items):
        return [question]
    prefix = "".join(words[:start])
    rest = "".join(words[end:]) + _COMPARISON.sub("", question[marker.start() :])
    return [prefix + item + rest for item in items]
