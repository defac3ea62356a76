"""Dates and years in Chinese text: the patterns that cleaning, retrieval, answering,
grounding and the scope check share, so that "a date" means the same thing to all of them.
Pure functions over strings.
"""

from __future__ import annotations

import re

# A date with its parts, however it is written: 2024-04-01, 2024/4/1, 2024年04月01日.
DATE_PARTS = re.compile(r"(?<!\d)(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?(?!\d)")
# A date as Chinese text writes it (and as `chinese_dates` rewrites the others): with a
# day, a month alone (2024年4月) or without the year (3月31日).
DATE = r"\d{4}年\d{1,2}月(?:\d{1,2}日)?|\d{1,2}月\d{1,2}日"
# A year: 1900–2099 standing alone (2022年, 2022春运, 2022-08-04), unless a unit makes it
# an amount (2000万元, 1980平方米, 2000人).
_YEAR = re.compile(
    r"(?<![\d.])((?:19|20)\d{2})"
    r"(?!\d|\.\d|\s*(?:[万亿千百多余%％元吨人个名家亩米辆项件户套台次倍]|美元|平方|公里))"
)
_LEADING_ZERO = re.compile(r"(?<=[年月])0(?=\d[月日])")


def iso_date(text: str) -> str:
    """The first plausible date in `text` as YYYY-MM-DD, or "" (for metadata)."""
    for m in DATE_PARTS.finditer(text):
        year, month, day = (int(g) for g in m.groups())
        if 1949 <= year <= 2100 and 1 <= month <= 12 and 1 <= day <= 31:
            return f"{year:04d}-{month:02d}-{day:02d}"
    return ""


def chinese_dates(text: str) -> str:
    """Every date in `text` written one way: 2024年4月1日 (from 2024-04-01 or 2024年04月01日)."""
    text = DATE_PARTS.sub(lambda m: f"{m[1]}年{int(m[2])}月{int(m[3])}日", text)
    return _LEADING_ZERO.sub("", text)


def years(text: str) -> list[str]:
    """The years (1900–2099) `text` names, in order, each once: "2022年上半年",
    "2022春节档" and "2022-08-04" → ["2022"]; "投资2000万元以上" → []."""
    return list(dict.fromkeys(_YEAR.findall(text)))
