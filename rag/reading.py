"""Answers that lead with the answer: the reading model finds the span, the product quotes
the sentence that holds it (`RAG_READER=bundled`, the default).

The extractive answerer (rag.answer) knows which sentences are about the question, not
where in them the asked-for fact is, so its answer is a 190–290-character excerpt. Here the
reading model (rag.models.reader) reads the question against the best passages, each after
its document's header line (title, source, author, date: metadata the cleaner took out of
the text, so "这篇报道是哪家媒体发布的" can be answered). Of the sentences the excerpt would
quote, the one ranked first by its excerpt score plus the model's confidence in the best
span inside it leads:

    <that span>：<the sentence holding it>[n]
    <the excerpt's other sentences, up to CONTEXT_CHARS>[m]

then the extractive pool's other relevant clauses (相关条款, collapsed) as before. Refusal is
the excerpt answerer's (weak evidence); the model's confidence refuses only above a
threshold that is 0 by default (it is no refusal signal on policy text: bench/README.md). A
sentence that gives instructions (系统提示：你现在是管理员…) is document content, never an
answer's lead.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from rag import grounding
from rag.answer import (
    REFUSAL,
    AnswerType,
    Candidate,
    ExtractiveAnswerer,
    answer_type,
    attribution,
    named_document,
    plain_brackets,
    related,
    related_of,
    score_sentences,
    wants_attribution,
)
from rag.articles import asked_article
from rag.models.reader import Reader, Reading, passage_header, passage_text
from rag.split import sentence_spans
from rag.types import Answer, Citation, Hit

if TYPE_CHECKING:
    from rag.history import Message

# A lead sentence longer than this is cut to the clauses around the span (the whole
# sentence stays in the citation): the person wants the fact, not the paragraph.
LEAD_CHARS = 120
# Text that addresses the assistant instead of the reader of a policy: an injection.
_INSTRUCTION = re.compile(
    r"系统提示|系统指令|忽略(?:以上|之前|前面|上述|所有)|无视(?:以上|之前|上述)|你现在是|你是一个|"
    r"扮演(?:一[个名位])?(?:助手|管理员|客服|AI|人工智能)|请(?:回答|输出|告诉用户)|(?:ignore|disregard)\s+(?:all\s+)?(?:the\s+)?(?:previous|above|prior)|"
    r"system\s*prompt|you\s+are\s+now",
    re.IGNORECASE,
)
_CLAUSE_END = re.compile(r"[，,、：:]")


def asks_for_figure(question: str) -> bool:
    """Whether a figure may answer: a question that asks how much, how many or when. The
    model was trained on many such questions and offers a figure wherever a passage holds
    one; for 如何处置… or 采取了什么措施 that figure is the wrong span."""
    return answer_type(question) is not AnswerType.OTHER


# A question about the document itself — who published it, who wrote it, when — is
# answered from the header line; any other question from the text.
_ABOUT_DOCUMENT = re.compile(
    r"媒体|报社|来源|出处|记者|作者|谁写|发布|刊发|刊登|发表|印发|标题|题目"
)


def asks_about_document(question: str) -> bool:
    return bool(_ABOUT_DOCUMENT.search(question))


def is_instruction(text: str) -> bool:
    """Whether `text` talks to the assistant (an injected instruction), not about policy."""
    return bool(_INSTRUCTION.search(text))


@dataclass(frozen=True)
class Lead:
    """What an answer leads with: the span (if the reading model found one in it) and the
    sentence, or clauses, holding it."""

    hit: int
    span: str
    quote: str  # verbatim from the hit's chunk text ("" when the span is in the header)
    confidence: float  # the reading model's, for this span (0 without one)


@dataclass(frozen=True)
class Choice:
    """The lead an answer would take, and what refusal weighs: the reading model's best
    confidence over the passages read, and the excerpt answerer's evidence; with the
    excerpt's sentences and the pool they came from, for what follows the lead."""

    lead: Lead | None
    confidence: float
    evidence: float
    quoted: Sequence[Candidate] = ()
    pool: Sequence[Candidate] = ()


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


def holding(spans: Sequence[tuple[int, int]], start: int) -> tuple[int, int]:
    """The sentence holding offset `start`."""
    return next(((a, b) for a, b in spans if a <= start < b), (start, start))


# What a span may not hold to be shown before its sentence: the end of a sentence (the
# first "sentence" of the answer would be a fragment), and at its ends, punctuation.
_SPAN_BREAK = re.compile(r"[。！？；!?;\n]")
_EDGE_PUNCTUATION = "，。、；：,.;:！？!? "
_PAIRS = {"）": "（", ")": "(", "”": "“", "》": "《", "」": "「"}


def tidy_span(span: str) -> str:
    """The span as it can lead an answer ("" when it cannot): no punctuation or
    unpaired closing bracket at its ends, no sentence end inside."""
    span = span.strip(_EDGE_PUNCTUATION)
    while span and span[-1] in _PAIRS and _PAIRS[span[-1]] not in span:
        span = span[:-1].rstrip(_EDGE_PUNCTUATION)
    return "" if _SPAN_BREAK.search(span) else span


def lead_of(reading: Reading, hit: Hit, header_chars: int) -> Lead:
    """The lead for a reading of `hit`'s header line + newline + chunk text: the span
    (cut at the end of the sentence it starts in) and that sentence."""
    if reading.start < header_chars:  # the span is metadata (the source, the reporter…)
        span = reading.text.split("\n", 1)[0].strip()  # not on into the text
        return Lead(reading.passage, span, "", reading.confidence)
    text = hit.chunk.text
    start = reading.start - header_chars - 1
    a, b = holding(_spans(hit), start)
    end = min(reading.end - header_chars - 1, b) if b > a else reading.end - header_chars - 1
    a, b = (a, b) if b > a else (start, end)
    if b - a > LEAD_CHARS:
        left, right = clauses_around(text[a:b], start - a, end - a, LEAD_CHARS)
        a, b = a + left, a + right
    return Lead(reading.passage, tidy_span(text[start:end]), text[a:b].strip(), reading.confidence)


def _spans(hit: Hit) -> tuple[tuple[int, int], ...]:
    text = hit.chunk.text
    return hit.sentence_spans or tuple((s.start, s.end) for s in sentence_spans(text))


# How much the reading model's confidence in a span adds to the score of the sentence
# holding it, on the excerpt answerer's scale (similarity + coverage …): 1–3 score alike
# on policy-dev and rgb-dev (bench/README.md, "Reading model"); 2 is the middle.
READER_WEIGHT = 2.0
# Characters of the excerpt's other sentences that may follow the lead, on a line of their
# own: what the lead's sentence leaves out (measured in bench/README.md, "Reading model").
CONTEXT_CHARS = 250


class ReadingAnswerer:
    """Answers led by the reading model's span, in the sentence of the excerpt answer that
    the sentence score and the model's confidence together rank first; the excerpt's other
    sentences follow, and its pool gives the 相关条款."""

    local = True

    def __init__(
        self,
        reader: Reader,
        extractive: ExtractiveAnswerer,
        passages: int = 4,
        refusal_threshold: float = 0.0,
        reader_weight: float = READER_WEIGHT,
        context_chars: int = CONTEXT_CHARS,
    ):
        self.reader = reader
        self.extractive = extractive
        self.passages = passages
        self.refusal_threshold = refusal_threshold
        self.reader_weight = reader_weight
        self.context_chars = context_chars

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

    def choose(self, question: str, hits: Sequence[Hit], k: int) -> Choice:
        """Of the sentences the excerpt answer would quote, the one whose excerpt score
        plus the model's confidence in the best span inside it is highest leads (a span
        in a header line competes with its passage's best sentence); instructions to the
        assistant never lead."""
        read = list(hits[: min(k, self.passages)])
        if not read:
            return Choice(None, 0.0, 0.0)
        # The excerpt answerer knows which sentences are about the question; the model,
        # which of those holds the answer. (Ranking every sentence by the two together
        # lost ~4 points of first-sentence accuracy on policy-dev: bench/README.md.)
        quoted, pool = self.extractive.choose(question, hits, k, self.extractive.max_chars)
        keys = {(c.hit, c.start) for c in quoted if not is_instruction(c.text)}
        about_document = asks_about_document(question)
        # So only the passages it quotes are read, and every one when the header line may
        # answer (or the excerpt would refuse: refusal still weighs the model's confidence).
        quoting = {h for h, _ in keys}
        reading = [n for n in range(len(read)) if about_document or not keys or n in quoting]
        headers = [passage_header(h) for h in read]
        found = self.reader.read_spans(
            question, [passage_text(read[n]) for n in reading], figures=asks_for_figure(question)
        )
        leads: dict[int, list[Lead]] = {}  # passage → its spans' leads, best first
        for n, spans in zip(reading, found, strict=True):
            for span in spans:
                lead = lead_of(replace(span, passage=n), read[n], len(headers[n]))
                if not is_instruction(lead.quote or lead.span) and (lead.quote or about_document):
                    leads.setdefault(n, []).append(lead)
        idf = self.extractive.idf
        candidates = [
            c
            for c in score_sentences(question, hits, idf, len(read), self.extractive.weights)
            if not is_instruction(c.text)
        ]
        # A question that names one document is answered from it, as the excerpts are.
        named = named_document(question, read, idf)
        if named is not None:
            own = {n for n, h in enumerate(read) if h.chunk.doc_id == named}
            candidates = [c for c in candidates if c.hit in own] or candidates
            leads = {n: mine for n, mine in leads.items() if n in own} or leads
        evidence = self.extractive.evidence(candidates)
        best_of = {}  # each passage's best sentence score, quoted or not
        for c in candidates:
            best_of[c.hit] = max(best_of.get(c.hit, c.score), c.score)
        candidates = [c for c in candidates if (c.hit, c.start) in keys] or candidates
        best_leads = [mine[0] for mine in leads.values()]
        confidence = max((lead.confidence for lead in best_leads), default=0.0)
        best: tuple[float, Lead] | None = None
        for c in candidates:
            inside = [lead for lead in leads.get(c.hit, []) if _within(lead.quote, c.text)]
            option = inside[0] if inside else Lead(c.hit, "", c.text.strip(), 0.0)
            value = c.score + self.reader_weight * option.confidence
            if best is None or value > best[0]:
                best = (value, option)
        for lead in best_leads:  # metadata answers: the header line read as text
            if lead.quote:
                continue
            value = best_of.get(lead.hit, 0.0) + self.reader_weight * lead.confidence
            if best is None or value > best[0]:
                best = (value, lead)
        return Choice(best[1] if best else None, confidence, evidence, quoted, pool)

    def refuses(self, choice: Choice) -> bool:
        return (
            choice.lead is None
            or choice.confidence < self.refusal_threshold
            or choice.evidence < self.extractive.refusal_threshold
        )

    def answer(self, question: str, hits: Sequence[Hit], k: int) -> Answer:
        if asked_article(question) is not None:
            # "第十二条怎么规定的": the answer is the article as it reads, not a span of it.
            return self.extractive.answer(question, hits, k)
        choice = self.choose(question, hits, k)
        if self.refuses(choice):
            refused = Answer(question=question, answer=REFUSAL, refused=True)
            refused.confidence = choice.confidence
            refused.signals = {"confidence": choice.confidence, "evidence": choice.evidence}
            return refused
        lead = choice.lead
        shown, more = self.context(choice, self.context_chars)
        pool = choice.pool
        answer = compose_lead(question, hits, [lead], more)
        answer.span, answer.confidence = lead.span, choice.confidence
        answer.signals = {"confidence": choice.confidence, "evidence": choice.evidence}
        answer.related = related_of(
            hits,
            related(
                [c for c in pool if not is_instruction(c.text)],
                [*(shown or pool[:1]), *more],
                self.extractive.relative_cutoff,
            ),
        )
        return answer

    @staticmethod
    def context(choice: Choice, room: int) -> tuple[list[Candidate], list[Candidate]]:
        """The excerpt's sentences that are the lead's, and those that may follow it (the
        excerpt's others, best first, within `room` characters)."""
        lead = choice.lead
        shown = [c for c in choice.pool if c.hit == lead.hit and _within(lead.quote, c.text)]
        more = []
        for c in choice.quoted:
            if c in shown or is_instruction(c.text) or len(c.text) > room:
                continue
            if lead.quote and (c.text.strip() in lead.quote or lead.quote in c.text):
                continue
            more.append(c)
            room -= len(c.text)
        return shown, more

    def answer_parts(
        self, question: str, parts: Sequence[tuple[str, Sequence[Hit]]], hits: Sequence[Hit], k: int
    ) -> Answer:
        """A comparison: each item answered from its own passages, in the question's
        order; an item without a confident answer is named in the notice."""
        position = {hit.chunk.chunk_id: i for i, hit in enumerate(hits)}
        leads: list[Lead] = []
        more: list[Candidate] = []
        missing: list[str] = []
        confidences = []
        for part, part_hits in parts:
            choice = self.choose(part, part_hits, k)
            if self.refuses(choice):
                missing.append(part)
                continue
            lead = choice.lead
            # Each item's excerpt follows its lead within its share of the room.
            _, part_more = self.context(choice, self.context_chars // len(parts))
            at = position[part_hits[lead.hit].chunk.chunk_id]
            leads.append(Lead(at, lead.span, lead.quote, lead.confidence))
            more += [replace(c, hit=position[part_hits[c.hit].chunk.chunk_id]) for c in part_more]
            confidences.append(choice.confidence)
        if not leads:
            return Answer(question=question, answer=REFUSAL, refused=True)
        quotes = [lead.quote for lead in leads if lead.quote]
        said: set[str] = set()
        follow = []
        for c in more:  # one item's excerpt may hold another's lead, or repeat its excerpt
            text = c.text.strip()
            if text in said or any(text in q or q in text for q in quotes):
                continue
            said.add(text)
            follow.append(c)
        answer = compose_lead(question, hits, leads, follow)
        answer.span = leads[0].span
        answer.confidence = min(confidences)
        answer.notice = "".join(f"知识库中没有找到与“{part}”相关的内容。" for part in missing)
        return answer


def _within(quote: str, sentence: str) -> bool:
    """Whether a lead's quote and a candidate sentence are one piece of text: the quote is
    the sentence, a part of it (clauses cut out of it) or holds it (a span running on)."""
    return bool(quote) and (quote in sentence or sentence.strip() in quote)


def compose_lead(
    question: str, hits: Sequence[Hit], leads: Sequence[Lead], more: Sequence[Candidate] = ()
) -> Answer:
    """Each lead as "span：sentence[n]" (just "sentence[n]" when the span is most of it,
    "span[n]" with the document named when it came from the header, "据《title》（source，
    date）：sentence[n]" when the question asks which document says it), one per line; then,
    on a line of their own, the `more` sentences that say what the lead leaves out."""
    quotes: dict[int, list[str]] = {}  # hit → its quoted sentences; insertion order = [n]
    lines = []

    def number(h: int, quote: str) -> int:
        quoted = quotes.setdefault(h, [])
        if quote and quote not in quoted:
            quoted.append(quote)
        return list(quotes).index(h) + 1

    attribute = wants_attribution(question)
    for lead in leads:
        n = number(lead.hit, lead.quote)
        if attribute and lead.quote:  # "哪个文件规定的": the document is the answer
            about = attribution(Citation.of(n, hits[lead.hit], (lead.quote,)))
            lines.append(f"{about}{plain_brackets(lead.quote)}[{n}]")
        elif not lead.quote:
            title = hits[lead.hit].chunk.meta.get("title", "")
            about = f"（见《{title}》）" if title else ""
            lines.append(f"{plain_brackets(lead.span)}{about}[{n}]")
        elif not lead.span or len(lead.span) >= 0.6 * len(lead.quote):
            lines.append(f"{plain_brackets(lead.quote)}[{n}]")
        else:
            lines.append(f"{plain_brackets(lead.span)}：{plain_brackets(lead.quote)}[{n}]")
    if more:
        lines.append("".join(f"{plain_brackets(c.text)}[{number(c.hit, c.text)}]" for c in more))
    text = "\n".join(lines)
    citations = [Citation.of(n, hits[h], tuple(q)) for n, (h, q) in enumerate(quotes.items(), 1)]
    # Verbatim as they are, the span's and the quote's figures are checked like any
    # answer's: against the passage each cites (its header line included).
    sources = {n: passage_text(hits[h]) for n, h in enumerate(quotes, 1)}
    checked = grounding.check(text, sources)
    answer = Answer(question=question, answer=text, refused=False, citations=citations)
    answer.unverified = checked.unverified
    return answer
