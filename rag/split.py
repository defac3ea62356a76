"""Chinese, sentence-aware splitting: pure functions over strings.

langchain's RecursiveCharacterTextSplitter measures and overlaps by separators it was
given, not by sentences, and loses character offsets once it strips whitespace; we need
both (citations quote exact sentences at known offsets), so this is written here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A sentence ends after 。！？；… (or their ASCII forms, or a line end), together with any
# closing quotes or brackets that follow. "." is not an end: it is the decimal point
# in 99.99亿元.
_SENTENCE = re.compile(r"[^\n。！？；!?;…]*(?:[。！？；!?;]+|…+|\n|$)[”’」』）)\]】》]*")
# Without ；and …: for text whose clauses share a closing marker (rag.grounding), as in
# "补贴50%……最高100万元[1]。".
_WHOLE_SENTENCE = re.compile(r"[^\n。！？!?]*(?:[。！？!?]+|\n|$)[”’」』）)\]】》]*")
# Where an over-long sentence may be cut: after a comma-like mark.
_CLAUSE = re.compile(r"[^，、,：:]*[，、,：:]?")
# A sentence that opens a numbered provision or section: 第七条, 第二章, 一、, （三）.
_PROVISION = re.compile(
    r"第[一二三四五六七八九十百零〇\d]+[条章节]|[一二三四五六七八九十]+、|（[一二三四五六七八九十]+）"
)
MIN_FILL = 0.5  # a chunk ends before a provision once it holds this share of its size


@dataclass(frozen=True)
class Span:
    start: int
    end: int


def sentence_spans(text: str, at_semicolons: bool = True) -> list[Span]:
    """Sentences of `text` as spans; whitespace-only pieces are dropped, offsets exact.
    A policy clause ends at ；as a sentence does (“…补贴50万元；最高100万元。” is two
    quotable pieces) unless `at_semicolons` is false (then … does not end one either)."""
    spans = []
    for m in (_SENTENCE if at_semicolons else _WHOLE_SENTENCE).finditer(text):
        start, end = m.start(), m.end()
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if end > start:
            spans.append(Span(start, end))
    return spans


def split_sentences(text: str) -> list[str]:
    return [text[s.start : s.end] for s in sentence_spans(text)]


def _cut_long(text: str, span: Span, size: int) -> list[Span]:
    """Split one sentence longer than `size` at commas, else hard every `size` characters."""
    pieces: list[Span] = []
    cur = span.start
    for m in _CLAUSE.finditer(text, span.start, span.end):
        if m.end() == m.start():
            continue
        if m.end() - cur > size and m.start() > cur:
            pieces.append(Span(cur, m.start()))
            cur = m.start()
    pieces.append(Span(cur, span.end))
    out = []
    for p in pieces:
        for s in range(p.start, p.end, size):
            out.append(Span(s, min(s + size, p.end)))
    return out


def chunk_spans(text: str, size: int, overlap: int) -> list[Span]:
    """Pack whole sentences into chunks of at most `size` characters.

    Consecutive chunks share the trailing sentences of the earlier one, up to `overlap`
    characters, so a fact that straddles a boundary is whole in at least one chunk.
    A sentence is cut only when it alone is longer than `size`.

    A numbered provision (第七条, 一、, （三）) starts a new chunk once the current one is
    half full, and a chunk that ends before one carries no overlap into it: a chunk then
    holds whole provisions rather than the tail of one and the head of the next, so its
    vector and its words are about one thing (policy-dev hit@1 0.809 → 0.830, project
    set answer_acc 0.868 → 0.925; bench/README.md).
    """
    if size <= 0 or overlap < 0 or overlap >= size:
        raise ValueError(f"need 0 <= overlap < size, got size={size} overlap={overlap}")
    units: list[Span] = []
    for s in sentence_spans(text):
        units.extend(_cut_long(text, s, size) if s.end - s.start > size else [s])
    opens = [_PROVISION.match(text, u.start) is not None for u in units]
    chunks: list[Span] = []
    i = 0
    while i < len(units):
        j = i
        while j + 1 < len(units) and units[j + 1].end - units[i].start <= size:
            if opens[j + 1] and units[j].end - units[i].start >= MIN_FILL * size:
                break
            j += 1
        chunks.append(Span(units[i].start, units[j].end))
        if j + 1 >= len(units):
            break
        if opens[j + 1]:  # the next provision starts a chunk of its own, without overlap
            i = j + 1
            continue
        # Start the next chunk at the earliest sentence that keeps the overlap within
        # budget, but always move forward.
        nxt = j + 1
        while nxt - 1 > i and units[j].end - units[nxt - 1].start <= overlap:
            nxt -= 1
        # ...and the overlap must leave room for at least the next new sentence.
        while nxt <= j and units[j + 1].end - units[nxt].start > size:
            nxt += 1
        i = nxt
    return chunks


def with_title(text: str, title: str) -> tuple[str, int]:
    """What the index embeds and BM25 reads for a chunk: its document's title in front,
    unless the chunk already begins with it, and where the chunk's own text starts.

    A clause deep inside a long policy rarely names the policy (“第七条 … 按6:4分成”), and
    questions do (“飞地项目的税收怎么分成”): on policy-dev the title in front lifted the
    right chunk's rank (bench/README.md).
    """
    if not title or text.startswith(title):
        return text, 0
    return f"{title}\n{text}", len(title) + 1
