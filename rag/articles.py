"""The articles of a policy (第七条, 第十二条 …): which article a place in a text belongs to,
and which article a question names ("第十二条怎么规定的", "第12条"). Pure functions over
strings, tested with Chinese inline.

An article begins where its heading opens a line or follows a sentence's end; everything
up to the next heading is that article. A chunk records the article in force where it begins (its
"article" field), so a passage cut from the middle of an article still knows it.
"""

from __future__ import annotations

import bisect
import re

_NUMERAL = "零〇一二三四五六七八九十百"
# A heading opens a line, or follows a sentence's end in text whose lines were joined
# (“…实行网上办理。 第三条 各市…”); a reference inside a sentence (依照第五条的规定,
# 第四条、第五条) follows other characters or is followed by 的、和 ….
HEADING = re.compile(rf"(?<![^\s。；！？])[ \t\u3000]*(第[{_NUMERAL}\d]+条)(?![的之、和及与或至])")
ASKED = re.compile(rf"第\s*([{_NUMERAL}]+|\d+)\s*条")
_DIGITS = "零一二三四五六七八九"


def chinese_number(n: int) -> str:
    """1 → 一, 12 → 十二, 20 → 二十, 105 → 一百零五 (as article numbers are written)."""
    if n < 10:
        return _DIGITS[n]
    if n < 20:
        return "十" + (_DIGITS[n % 10] if n % 10 else "")
    if n < 100:
        return _DIGITS[n // 10] + "十" + (_DIGITS[n % 10] if n % 10 else "")
    rest = n % 100
    tail = "" if rest == 0 else ("零" + _DIGITS[rest] if rest < 10 else chinese_number(rest))
    if 10 <= rest < 20:
        tail = "一" + tail  # 一百一十二条
    return _DIGITS[n // 100] + "百" + tail


def normalized(heading: str) -> str:
    """第12条 → 第十二条; a heading in Chinese numerals is kept as written."""
    match = ASKED.fullmatch(heading.strip())
    if not match:
        return heading
    number = match[1]
    return f"第{chinese_number(int(number)) if number.isdigit() else number}条"


def article_at(text: str, offset: int, before: str = "") -> str:
    """The article the character at `offset` of `text` belongs to: the last heading that
    opens a line at or before it; `before` (the article in force where `text` begins)
    when there is none."""
    last = before
    for match in HEADING.finditer(text):
        if match.start(1) > offset:
            break
        last = match[1]
    return normalized(last) if last else ""


def headings(text: str) -> list[tuple[int, str]]:
    """(offset, article) of every article heading in `text`, in order."""
    return [(m.start(1), normalized(m[1])) for m in HEADING.finditer(text)]


def in_force(starts: list[tuple[int, str]], offset: int) -> str:
    """The article of `headings(text)` in force at `offset` ("" before the first)."""
    i = bisect.bisect_right(starts, (offset, "\uffff")) - 1
    return starts[i][1] if i >= 0 else ""


def covers(text: str, before: str, article: str) -> bool:
    """Whether a passage (`text`, beginning inside `before`) holds any of `article`."""
    return before == article or any(name == article for _, name in headings(text))


def asked_article(question: str) -> str | None:
    """The one article a question names ("第十二条怎么规定的" → 第十二条); None when it
    names none or several."""
    found = {normalized(m[0]) for m in ASKED.finditer(question)}
    return found.pop() if len(found) == 1 else None
