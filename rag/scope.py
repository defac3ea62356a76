"""Honest scope: the places, years and document numbers a question names that its evidence
does not mention.

A question about 上海's rent subsidy, asked of a knowledge base that holds only 明川区's,
retrieves 明川区's clauses with high similarity (the topic is the same) and the answerer
would quote them as if they answered. What a question is about — its places (jieba tags
them `ns`) and its years — is checked against the documents an answer cites (their text,
title, issuer, region and date); whatever none of them mentions is named in a caveat in
front of the answer. A document number (第150号, 〔2023〕5号) that no cited document bears
names a document the knowledge base lacks: another document's figure is no answer to it at
all, so an answer from this machine is a refusal (rag.chain). Pure functions over strings.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from rag.decompose import segment
from rag.figures import years

# An administrative suffix, dropped to match "上海市" against "上海" or "莱芜区" against "莱芜".
_PLACE_SUFFIX = re.compile(r"(?:特别行政区|自治区|自治州|自治县|新区|地区|省|市|区|县|州|镇|乡)$")
# jieba's `ns` tag is context-free: 安家 (安家补贴), 中山 or 黄山 are in its dictionary as
# places. A word counts as a place when it carries an administrative suffix (滨江区, 上海市)
# or is a province-level region or a major city, the names people leave the suffix off.
# fmt: off
_BARE_PLACES = frozenset({
    "北京", "天津", "上海", "重庆", "河北", "山西", "辽宁", "吉林", "黑龙江", "江苏", "浙江",
    "安徽", "福建", "江西", "山东", "河南", "湖北", "湖南", "广东", "海南", "四川", "贵州",
    "云南", "陕西", "甘肃", "青海", "台湾", "内蒙古", "广西", "西藏", "宁夏", "新疆", "香港",
    "澳门", "深圳", "广州", "杭州", "南京", "苏州", "武汉", "成都", "西安", "青岛", "厦门",
    "宁波", "大连", "沈阳", "长沙", "郑州", "济南", "合肥", "福州", "昆明", "哈尔滨", "长春",
    "石家庄", "太原", "南昌", "南宁", "贵阳", "兰州", "海口", "无锡", "东莞", "佛山", "温州",
    "珠海", "烟台", "雄安", "浦东",
})
# fmt: on
# A document's number (文号): 〔2023〕5号 ([2021]12号, （2021）12号 alike), and 第150号 where it
# names a document (第150号文件, 政府令第65号, 公告2020年第8号), not 第3号线 or 2023年第1号台风.
_YEAR_NUMBER = re.compile(r"〔(\d{4})〕(\d+)号")
_NTH_NUMBER = re.compile(r"(?:(\d{4})年)?第([0-9零〇一二两三四五六七八九十百千]+)号")
_NAMES_DOCUMENT = re.compile(r"文件|令|公告|通知|意见|决定|批复|规定|办法")
_NORMAL_NUMBER = re.compile(r"〔\d{4}〕\d+号|(?:\d{4}年)?第\d+号")
_BRACKETS = str.maketrans("[［(（]］)）", "〔〔〔〔〕〕〕〕")
_SPACE = re.compile(r"\s+")
_DIGITS = {c: i for i, c in enumerate("零一二三四五六七八九")} | {"〇": 0, "两": 2}
_UNITS = {"十": 10, "百": 100, "千": 1000}


def arabic(numeral: str) -> int:
    """ "一百五十" → 150, "十二" → 12, "65" → 65."""
    if numeral.isdigit():
        return int(numeral)
    total = digit = 0
    for c in numeral:
        if c in _UNITS:
            total += (digit or 1) * _UNITS[c]
            digit = 0
        else:
            digit = _DIGITS[c]
    return total + digit


def normal_text(text: str) -> str:
    """Text as document numbers are compared in: full-width forms folded (NFKC), no spaces,
    every bracket of a 〔year〕 as 〔〕, 第一百五十号 as 第150号."""
    text = _SPACE.sub("", unicodedata.normalize("NFKC", text)).translate(_BRACKETS)
    return _NTH_NUMBER.sub(lambda m: f"{m[1] + '年' if m[1] else ''}第{arabic(m[2])}号", text)


def document_numbers(question: str) -> list[str]:
    """The document numbers `question` names, in normal form, each once."""
    text = normal_text(question)
    found = [m[0] for m in _YEAR_NUMBER.finditer(text)]
    for m in _NTH_NUMBER.finditer(text):
        before = text[: m.start()]
        if before.endswith(("令", "公告")) or _NAMES_DOCUMENT.match(text, m.end()):
            found.append(m[0])
    return list(dict.fromkeys(found))


def is_document_number(name: str) -> bool:
    """Whether an entry of `Asked.missing` is a document number (not a place or year)."""
    return bool(_NORMAL_NUMBER.fullmatch(name))


def places(question: str) -> list[str]:
    """Place names in `question`, in order, each once."""
    named = [
        word
        for word, flag in segment(question)
        if flag.startswith("ns") and (word in _BARE_PLACES or place_stem(word) != word)
    ]
    return list(dict.fromkeys(named))


def place_stem(name: str) -> str:
    """ "上海市" → "上海"; a name that would be one character without its suffix stays whole."""
    stem = _PLACE_SUFFIX.sub("", name)
    return stem if len(stem) >= 2 else name


@dataclass(frozen=True)
class Asked:
    """The places, years and document numbers a question names (falsy when none)."""

    places: list[str]
    years: list[str]
    numbers: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.places or self.years or self.numbers)

    def missing(self, evidence: Sequence[str]) -> list[str]:
        """Those no `evidence` text mentions (years as "2019年").

        Places count only when none of them is mentioned: in "武汉的企业到明川区投资" the
        question is about 明川区, and 武汉 is where the investor comes from. A year counts
        as mentioned by a date written 2019-…, as documents' metadata has it."""
        text = "\n".join(evidence)
        missing = list(self.places) if not any(place_stem(p) in text for p in self.places) else []
        missing += [f"{y}年" for y in self.years if y not in text]
        if self.numbers:
            text = normal_text(text)
        return missing + [n for n in self.numbers if n not in text]


def asked(question: str) -> Asked:
    """What to check: segmenting the question once, before any document is read."""
    return Asked(places(question), years(question), document_numbers(question))


def uncovered(question: str, evidence: Sequence[str]) -> list[str]:
    """The places, years and document numbers `question` names that no `evidence` text
    mentions."""
    return asked(question).missing(evidence)


def caveat(missing: Sequence[str], covered: Sequence[str]) -> str:
    """What the reader is told with an answer from passages about somewhere (or some
    year) else, before it or, after a streamed answer, below it; `covered` names what the
    passages are about (a region, or a 《title》)."""
    named = "、".join(f"“{m}”" for m in missing)
    about = "、".join(dict.fromkeys(c for c in covered if c))
    return f"知识库中没有关于{named}的内容，本回答依据的是{about}的相关内容，仅供参考。"
