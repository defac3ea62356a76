"""Questions that compare several things at once (“A和B…分别是多少”), split into one
question per thing, so each gets its own retrieval and its own sentences.

One question vector for “外资奖励办法和飞地政策规定的申报截止日期分别是哪天？” lands between
the two documents and the answer quotes one of them; asked separately, each document comes
first for its own question (bench/README.md, “Comparisons”). Splitting needs word
boundaries, which Chinese does not mark, so this uses jieba's segmenter and part-of-speech
tags; a question it cannot split with confidence is asked whole.
"""

from __future__ import annotations

import re

# 各 only before what asks for a value: 各有千秋 and 各部门 are not comparisons.
_COMPARISON = re.compile(r"分别|各自|各(?=是|为|有多少|有几|多少|几|占|按)")
_CONJUNCTIONS = {"和", "与", "跟", "及", "以及", "、"}
_PUNCTUATION = set("，,。；;？?！!：:")
_ITEM_CHARS = (2, 40)  # an item outside this is a misparse
_MAX_ITEMS = 4  # more is a list to look up, not a comparison; asked whole
_TIME_UNITS = ("年", "月", "日", "季度")

Token = tuple[str, str]  # (word, jieba part-of-speech flag)


def _noun_like(flag: str) -> bool:
    return flag[:1] in ("n", "j") or flag in ("vn", "eng")


def _verb(flag: str) -> bool:
    return flag[:1] == "v" and flag != "vn"


def _ends_item(tokens: list[Token], i: int, verbs: bool) -> bool:
    """Whether token `i` cannot belong to a compared item: 的/对, punctuation, particles,
    time words and numbers of a year or month (shared by every item: “北京和上海2021年的
    GDP”; but “500强企业” keeps its number), and verbs unless the items are verb phrases
    (“莱芜区和钢城区|签约了哪些项目”, “实际使用|外资和欧美资金”)."""
    word, flag = tokens[i]
    if word in {"的", "对", "之"} or word in _PUNCTUATION or flag[:1] in ("u", "t"):
        return True
    if flag[:1] == "m":
        following = tokens[i + 1][0] if i + 1 < len(tokens) else ""
        return word.endswith(_TIME_UNITS) or following.startswith(_TIME_UNITS)
    return _verb(flag) and not verbs


def _item_start(tokens: list[Token], join: int, verbs: bool) -> int:
    """Where the first item begins: back from its conjunction to a word it cannot hold."""
    i = join - 1
    while i >= 0 and not _ends_item(tokens, i, verbs):
        i -= 1
    return i + 1


def _item_end(tokens: list[Token], join: int, verbs: bool) -> int:
    """Where the last item ends: on from its conjunction to a word it cannot hold, or to a
    preposition after its first word (“楼宇企业|按区级经济贡献奖励”; an item may start with
    one: “在产业园租厂房”)."""
    end = join + 1
    while end < len(tokens) and not _ends_item(tokens, end, verbs):
        end += 1
        if end < len(tokens) and tokens[end][1] == "p":
            break
    return end


def _clean_edges(tokens: list[Token], start: int, end: int, joins: list[int], verbs: bool) -> bool:
    """Whether the items' edges are certain. Without a 的/对/preposition/punctuation/year
    on both sides, items of different lengths may have swallowed a shared word (“博士后
    进站和出站的补贴”, “开办补贴和租金补贴比例”); a verb against an edge may belong to the
    items or to all of them; and “X的A和Y的B” pairs X with B (“北京的地铁和上海的公交”)."""
    before = tokens[start - 1] if start > 0 else ("", "")
    after = tokens[end] if end < len(tokens) else ("", "")
    if before[0] == "的" and after[0] == "的":
        return False
    if not verbs and (_verb(before[1]) or _verb(after[1])):
        return False
    lengths = {b - a for a, b in zip([start - 1, *joins], [*joins, end], strict=True)}

    def hard(token: Token) -> bool:
        word, flag = token
        return not word or word in {"的", "对"} or word in _PUNCTUATION or flag in ("p", "t")

    return len(lengths) == 1 or (hard(before) and (hard(after) or after[1][:1] == "m"))


def split_comparison(question: str) -> list[str]:
    """One question per compared item, each with the question's shared context, or
    `[question]` when it does not compare or cannot be split with confidence.

    >>> split_comparison("北京和上海2021年的GDP分别是多少？")
    ['北京2021年的GDP是多少？', '上海2021年的GDP是多少？']
    """
    marker = _COMPARISON.search(question)
    if not marker:
        return [question]
    tail = question[marker.end() :]
    if _COMPARISON.search(tail):
        return [question]  # “…分别是什么，各自的期限…”: two comparisons, asked whole
    tokens = segment(question[: marker.start()])
    words = [w for w, _ in tokens]
    joins = [i for i, w in enumerate(words) if w in _CONJUNCTIONS and 0 < i < len(words) - 1]
    if not joins or len(joins) >= _MAX_ITEMS:
        return [question]
    if words[joins[0] - 1] in _PUNCTUATION:
        # “A的落户奖励，和B的租金补贴，分别是多少”: each item is a whole clause.
        if len(joins) > 1:
            return [question]
        i = joins[0] - 2
        while i >= 0 and words[i] not in _PUNCTUATION:
            i -= 1
        start, end = i + 1, joins[0] + 1
        while end < len(words) and words[end] not in _PUNCTUATION:
            end += 1
        bounds = [(start, joins[0] - 1), (joins[0] + 1, end)]
    else:
        # Items are verb phrases when both ends hold a verb or one starts with a preposition
        # (“在写字楼租办公室和在产业园租厂房”; jieba tags 租厂房 as a noun).
        edge_items = [
            tokens[a:b]
            for a, b in (
                (_item_start(tokens, joins[0], True), joins[0]),
                (joins[-1] + 1, _item_end(tokens, joins[-1], True)),
            )
        ]
        verbs = all(any(_verb(f) for _, f in item) for item in edge_items) or any(
            item and item[0][1] == "p" for item in edge_items
        )
        start, end = _item_start(tokens, joins[0], verbs), _item_end(tokens, joins[-1], verbs)
        first = tokens[start : joins[0]]
        if any(_ends_item(tokens, j, verbs) for j in range(joins[0] + 1, joins[-1])):
            return [question]  # two 和 in different roles: “A和B的奖励和补贴分别…”
        if first and not _noun_like(first[-1][1]) and end - joins[-1] - 1 > len(first):
            # “省级和市级奖励”: the first item only modifies, so the noun after the last
            # item is shared by all of them.
            end = joins[-1] + 1 + len(first)
        if not _clean_edges(tokens, start, end, joins, verbs):
            return [question]
        bounds = [(start, joins[0])] + [
            (a + 1, b) for a, b in zip(joins, [*joins[1:], end], strict=True)
        ]
    items = ["".join(words[a:b]) for a, b in bounds]
    lo, hi = _ITEM_CHARS
    if len(set(items)) < len(items) or any(not lo <= len(item) <= hi for item in items):
        return [question]
    prefix = "".join(words[:start])
    rest = "".join(words[end:]) + tail
    return [prefix + item + rest for item in items]


def segment(text: str) -> list[Token]:
    import jieba
    import jieba.posseg

    if jieba.dt.initialized is False:  # first use: quiet, ~1 s to load its dictionary
        jieba.setLogLevel(60)
    return [(t.word, t.flag) for t in jieba.posseg.cut(text)]
