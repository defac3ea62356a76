"""Answers that lead with the answer: the reading model finds the span, the product quotes
the sentence that holds it (`RAG_READER=bundled`, the default).

The extractive answerer (rag.answer) knows which sentences are about the question, not
where in them the asked-for fact is, so its answer is a 190–290-character excerpt. Here the
reading model (rag.models.reader) reads the question against the best passages, each after
its document's header line (title, source, author, date: metadata the cleaner took out of
the text, so "这篇报道是哪家媒体发布的" can be answered), and the answer is

    <the span it trusts>：<the sentence holding it>[n]

then the extractive pool's other relevant clauses (相关条款, collapsed) as before. Where no
passage has a confident span the question is refused. A sentence that gives instructions
(系统提示：你现在是管理员…) is document content, never an answer's lead.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rag import grounding
from rag.answer import REFUSAL, ExtractiveAnswerer, plain_brackets, related, related_of
from rag.models.reader import Reader, Reading
from rag.models.reader_data import header_text
from rag.split import sentence_spans
from rag.types import Answer, Citation, Hit

if TYPE_CHECKING:
    from rag.history import Message

# A lead sentence longer than this is cut to the clauses around the span (the whole
# sentence stays in the citation): the person wants the fact, not the paragraph.
LEAD_CHARS = 80
# Text that addresses the assistant instead of the reader of a policy: an injection.
_INSTRUCTION = re.compile(
    r"系统提示|系统指令|忽略(?:以上|之前|前面|上述|所有)|无视(?:以上|之前|上述)|你现在是|你是一个|"
    r"扮演(?:一[个名位])?(?:助手|管理员|客服|AI|人工智能)|请(?:回答|输出|告诉用户)|(?:ignore|disregard)\s+(?:all\s+)?(?:the\s+)?(?:previous|above|prior)|"
    r"system\s*prompt|you\s+are\s+now",
    re.IGNORECASE,
)
_CLAUSE_END = re.compile(r"[，,、：:]")


def is_instruction(text: str) -> bool:
    """Whether `text` talks to the assistant (an injected instruction), not about policy."""
    return bool(_INSTRUCTION.search(text))


def passage_header(hit: Hit) -> str:
    meta = hit.chunk.meta
    return header_text(
        meta.get("title", ""), meta.get("source", ""), meta.get("author", ""), meta.get("date", "")
    )


@dataclass(frozen=True)
class Lead:
    """What an answer leads with: the span, and the sentence (or clauses) holding it."""

    hit: int
    span: str
    quote: str  # verbatim from the hit's chunk text ("" when the span is in the header)
    confidence: float


def clauses_around(text: str, start: int, end: int, limit: int = LEAD_CHARS) -> tuple[int, int]:
    """Offsets of the clauses of `text` around [start, end): whole clauses (cut at commas)
    added on both sides, nearest first, while the piece stays within `limit` characters."""
    cuts = [0, *(m.end() for m in _CLAUSE_END.finditer(text)), len(text)]
    left = max(c for c in cuts if c <= start)
    right = min(c for c in cuts if c >= end)
    while True:
        grow_left = max((c for c in cuts if c < left), default=None)
        grow_right = min((c for c in cuts if c > right), default=None)
        options = [
            (left - g, g, right) for g in [grow_left] if g is not None and right - g <= limit
        ] + [(g - right, left, g) for g in [grow_right] if g is not None and g - left <= limit]
        if not options:
            return left, right
        _, left, right = min(options)


def lead_of(reading: Reading, hit: Hit, header_chars: int) -> Lead:
    """The lead for a reading of `hit`'s header line + newline + chunk text."""
    if reading.start < header_chars:  # the span is metadata (the source, the reporter…)
        return Lead(reading.passage, reading.text.strip(), "", reading.confidence)
    text = hit.chunk.text
    start = reading.start - header_chars - 1
    end = reading.end - header_chars - 1
    spans = hit.sentence_spans or tuple((s.start, s.end) for s in sentence_spans(text))
    a, b = next(((a, b) for a, b in spans if a <= start < b), (start, end))
    b = max(b, end)
    if b - a > LEAD_CHARS:
        left, right = clauses_around(text[a:b], start - a, end - a)
        a, b = a + left, a + right
    return Lead(reading.passage, text[start:end].strip(), text[a:b].strip(), reading.confidence)


class ReadingAnswerer:
    """The reading model's answers, with the extractive answerer's pool for 相关条款."""

    local = True

    def __init__(
        self,
        reader: Reader,
        extractive: ExtractiveAnswerer,
        passages: int = 4,
        refusal_threshold: float = 0.5,
    ):
        self.reader = reader
        self.extractive = extractive
        self.passages = passages
        self.refusal_threshold = refusal_threshold

    def condense(self, history: Sequence[Message], question: str) -> str:
        return ""

    def stream(
        self,
        question: str,
        parts: Sequence[tuple[str, Sequence[Hit]]],
        hits: Sequence[Hit],
        k: int,
        unavailable: str = "",
    ) -> Iterator[Answer]:
        yield (
            self.answer_parts(question, parts, hits, k)
            if len(parts) > 1
            else self.answer(question, hits, k)
        )

    def best_lead(self, question: str, hits: Sequence[Hit], k: int) -> Lead | None:
        """The most confident span among the first passages, skipping any whose sentence
        is an instruction to the assistant (None when no passage offers one)."""
        read = list(hits[: min(k, self.passages)])
        if not read:
            return None
        headers = [passage_header(h) for h in read]
        readings = self.reader.read(
            question, [f"{h}\n{x.chunk.text}" for h, x in zip(headers, read, strict=True)]
        )
        for reading in sorted(readings, key=lambda r: -r.confidence):
            lead = lead_of(reading, read[reading.passage], len(headers[reading.passage]))
            if lead.span and not is_instruction(lead.quote or lead.span):
                return lead
        return None

    def lead(self, question: str, hits: Sequence[Hit], k: int) -> Lead | None:
        """The best lead if it is confident enough to answer with."""
        lead = self.best_lead(question, hits, k)
        return lead if lead is not None and lead.confidence >= self.refusal_threshold else None

    def answer(self, question: str, hits: Sequence[Hit], k: int) -> Answer:
        lead = self.best_lead(question, hits, k)
        if lead is None or lead.confidence < self.refusal_threshold:
            refused = Answer(question=question, answer=REFUSAL, refused=True)
            refused.confidence = lead.confidence if lead else 0.0
            return refused
        answer = compose_lead(question, hits, [lead])
        answer.span, answer.confidence = lead.span, lead.confidence
        _, pool = self.extractive.choose(question, hits, k, self.extractive.max_chars)
        shown = [c for c in pool if c.hit == lead.hit and c.text.strip() in (lead.quote or "\0")]
        answer.related = related_of(
            hits,
            related(
                [c for c in pool if not is_instruction(c.text)],
                shown or pool[:1],
                self.extractive.relative_cutoff,
            ),
        )
        return answer

    def answer_parts(
        self, question: str, parts: Sequence[tuple[str, Sequence[Hit]]], hits: Sequence[Hit], k: int
    ) -> Answer:
        """A comparison: each item answered from its own passages, in the question's
        order; an item without a confident answer is named in the notice."""
        position = {hit.chunk.chunk_id: i for i, hit in enumerate(hits)}
        leads: list[Lead] = []
        missing: list[str] = []
        for part, part_hits in parts:
            lead = self.lead(part, part_hits, k)
            if lead is None:
                missing.append(part)
                continue
            at = position[part_hits[lead.hit].chunk.chunk_id]
            leads.append(Lead(at, lead.span, lead.quote, lead.confidence))
        if not leads:
            return Answer(question=question, answer=REFUSAL, refused=True)
        answer = compose_lead(question, hits, leads)
        answer.span = leads[0].span
        answer.confidence = min(lead.confidence for lead in leads)
        answer.notice = "".join(f"知识库中没有找到与“{part}”相关的内容。" for part in missing)
        return answer


def compose_lead(question: str, hits: Sequence[Hit], leads: Sequence[Lead]) -> Answer:
    """Each lead as "span：sentence[n]" (just "sentence[n]" when the span is most of it,
    "span[n]" with the document named when it came from the header), one per line."""
    lines, citations = [], []
    numbers: dict[int, int] = {}
    for lead in leads:
        hit = hits[lead.hit]
        n = numbers.setdefault(lead.hit, len(numbers) + 1)
        if n > len(citations):
            citations.append(Citation.of(n, hit, (lead.quote,) if lead.quote else ()))
        if not lead.quote:
            title = hit.chunk.meta.get("title", "")
            about = f"（见《{title}》）" if title else ""
            lines.append(f"{plain_brackets(lead.span)}{about}[{n}]")
        elif len(lead.span) >= 0.6 * len(lead.quote) or lead.span == lead.quote:
            lines.append(f"{plain_brackets(lead.quote)}[{n}]")
        else:
            lines.append(f"{plain_brackets(lead.span)}：{plain_brackets(lead.quote)}[{n}]")
    text = "\n".join(lines)
    # Verbatim as they are, the span's and the quote's figures are checked like any
    # answer's: against the passage each cites (its header line included).
    sources = {
        c.n: f"{passage_header(hits[h])}\n{hits[h].chunk.text}"
        for h, c in zip(numbers, citations, strict=True)
    }
    checked = grounding.check(text, sources)
    answer = Answer(question=question, answer=text, refused=False, citations=citations)
    answer.unverified = checked.unverified
    return answer
