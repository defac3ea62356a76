"""Grounding checks for generated answers: pure functions over strings.

Policy answers are full of amounts, rates and dates; an invented number is the worst
failure this product can have. So every figure a generated sentence states must appear
in a passage that sentence cites, and a marker that names no passage is removed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from rag import split
from rag.figures import DATE, chinese_dates

MARKER = re.compile(r"\[(\d{1,3})\]")  # a citation marker [n]
# Dates first, so "2024年4月1日" is one figure rather than three numbers. Amounts written
# in Chinese numerals (五百万元, 百分之五十) are figures too.
_FIGURE = re.compile(
    rf"{DATE}"
    r"|\d+(?:\.\d+)?(?:[万亿千百])?[%‰]?"
    r"|百分之[零〇一二三四五六七八九十百点]+"
    r"|[零〇一二三四五六七八九十百千两]+(?:点[零〇一二三四五六七八九]+)?[万亿]?(?:元|美元|倍|个百分点)"
)
_TRAILING_MARKERS = re.compile(r"(?:\s*\[\d{1,3}\])+")
_END_MARKS = re.compile(r"[\s。！？!?”’」』）)\]】》]+")
_NOT_COVERED = re.compile(
    r"没有找到|未找到|没有(?:提及|提到|涉及|相关)|未(?:提及|提到|涉及)|无法(?:回答|确定|找到)"
    r"|不包含|并未说明|没有说明|资料中没有|材料中没有|不足以回答"
)
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


@dataclass(frozen=True)
class Checked:
    text: str  # the answer with markers that name no passage removed
    cited: list[int]  # passage numbers in order of first use
    unverified: list[str]  # sentences stating a figure no cited passage contains


def _norm(text: str) -> str:
    """One spelling per figure: half-width (５０％ → 50%), no thousands separators (1,000)
    or spaces, dates as 2024年4月1日 (from 2024-04-01 or 2024年04月01日)."""
    text = _THOUSANDS.sub("", text)  # before NFKC: a full-width ，separates list items
    text = unicodedata.normalize("NFKC", text).replace(" ", "")
    return chinese_dates(text)


def _stated_in(figure: str, normalised_text: str) -> bool:
    """`figure` occurs as a whole number: "5" is not in "2025", "88.6" not in "188.6"."""
    pattern = r"(?<![\d.])" + re.escape(figure)
    if figure[-1].isdigit():
        pattern += r"(?!\d|\.\d)"
    return re.search(pattern, normalised_text) is not None


def figures(text: str) -> list[str]:
    """Dates, numbers, percentages and amounts stated in `text`, normalised."""
    return [m.group(0) for m in _FIGURE.finditer(_norm(MARKER.sub("", text)))]


def strip_unknown_markers(text: str, known: set[int]) -> str:
    return MARKER.sub(lambda m: m.group(0) if int(m.group(1)) in known else "", text)


def check(answer: str, passages: Mapping[int, str]) -> Checked:
    """Remove markers naming no passage; list each sentence whose figures are not all in
    the passages it cites (a sentence citing nothing verifies nothing)."""
    text = strip_unknown_markers(answer, set(passages))
    cited: list[int] = []
    for m in MARKER.finditer(text):
        if int(m.group(1)) not in cited:
            cited.append(int(m.group(1)))
    unverified = []
    for start, end in sentence_spans(text):
        sentence = text[start:end]
        stated = figures(sentence)
        if not stated:
            continue
        sources = _norm("\n".join(passages[int(n)] for n in MARKER.findall(sentence)))
        if not all(_stated_in(f, sources) for f in stated):
            unverified.append(unmarked(sentence))
    return Checked(text, cited, unverified)


def supporting_sentences(answer: str, n: int, passage: str) -> tuple[str, ...]:
    """The sentences of passage `n` that hold a figure the answer states while citing
    [n]: what the sources panel highlights for a generated answer."""
    stated = {
        f
        for start, end in sentence_spans(answer)
        if str(n) in MARKER.findall(answer[start:end])
        for f in figures(answer[start:end])
    }
    return tuple(
        passage[start:end].strip()
        for start, end in sentence_spans(passage)
        if any(_stated_in(f, _norm(passage[start:end])) for f in stated)
    )


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Where each sentence of an answer is (rag.split's sentences, but a clause after ；
    still belongs to the sentence whose marker closes it: "补贴50万元；最高100万元[1]。"),
    with the markers inside it or right after its end mark ("补贴50%。[1]", "补贴50%[1]。")."""
    spans: list[tuple[int, int]] = []
    for s in split.sentence_spans(text, at_semicolons=False):
        start = max(s.start, spans[-1][1] if spans else 0)
        while start < s.end and text[start].isspace():
            start += 1
        trailing = _TRAILING_MARKERS.match(text, s.end)
        end = trailing.end() if trailing else s.end
        if not _END_MARKS.sub("", text[start : s.end]):
            if spans and end > spans[-1][1]:  # "A。[1][2]。": the stray 。 is A's
                spans[-1] = (spans[-1][0], end)
            continue  # or markers the sentence before took
        spans.append((start, end))
    return spans


def unmarked(sentence: str) -> str:
    """A sentence as `unverified` lists it: without its markers."""
    return MARKER.sub("", sentence).strip()


def says_not_covered(text: str) -> bool:
    """The answer says the material does not answer the question."""
    return bool(_NOT_COVERED.search(text))


class MarkerStream:
    """`strip_unknown_markers` for text that arrives in pieces: a piece ending inside a
    possible marker ("…补贴[", "[1") is held back until the marker is complete."""

    _OPEN = re.compile(r"\[\d{0,3}$")

    def __init__(self, known: set[int]):
        self.known = known
        self._held = ""

    def feed(self, piece: str) -> str:
        text = self._held + piece
        tail = self._OPEN.search(text)
        cut = tail.start() if tail else len(text)
        self._held = text[cut:]
        return strip_unknown_markers(text[:cut], self.known)

    def flush(self) -> str:
        text, self._held = self._held, ""
        return strip_unknown_markers(text, self.known)
