"""The shared data types: what flows between loading, the index, retrieval and answering."""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import asdict, dataclass, field

from rag.articles import article_at

# Metadata every chunk carries (copied from its document); all strings, "" when unknown.
META_FIELDS = (
    "title", "date", "source", "author", "url", "doc_type", "region", "notice",
    "ocr",  # "true" when some of its text was read by OCR
)  # fmt: skip
# A chunk's own: in paged formats the page it begins on and where later pages begin in
# its text ("120,480"); in a policy the article in force where it begins (第七条); "" else.
CHUNK_FIELDS = ("page", "page_breaks", "article")


@dataclass(frozen=True)
class Document:
    """One cleaned source document. `doc_id` is stable: the path or the record's `id`."""

    doc_id: str
    text: str
    meta: dict[str, str] = field(default_factory=dict)
    # Where each page begins in `text` (paged formats: PDF, multi-page TIFF); () = none.
    page_starts: tuple[int, ...] = ()
    notes: tuple[str, ...] = ()  # what could not be read, for the one who indexes it

    def page_at(self, offset: int) -> int | None:
        """The 1-based page `offset` of `text` is on (None for formats without pages)."""
        if not self.page_starts:
            return None
        last = bisect.bisect_right(self.page_starts, offset) - 1
        # A page with no text of its own starts where the next one does: the text there
        # is the first of those pages'.
        return bisect.bisect_left(self.page_starts, self.page_starts[max(last, 0)]) + 1

    @property
    def content_hash(self) -> str:
        """Decides add / update / skip: covers the text and every metadata field."""
        h = hashlib.sha256(self.text.encode("utf-8"))
        for key in sorted(self.meta):
            h.update(f"\x00{key}\x00{self.meta[key]}".encode())
        return h.hexdigest()[:32]


@dataclass(frozen=True)
class Chunk:
    """A piece of a document's cleaned text, `text == document.text[start:end]`."""

    chunk_id: str
    doc_id: str
    index: int
    text: str
    start: int
    end: int
    meta: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its fused score and where each retriever ranked it (0 = unranked).

    `sentence_spans` are offsets within `chunk.text`; `sentence_scores` the cosine of each
    sentence's in-context vector with the question, which the answerer reuses.
    """

    chunk: Chunk
    score: float
    dense_rank: int = 0
    lexical_rank: int = 0
    dense_score: float = 0.0
    lexical_score: float = 0.0  # BM25, as the retrieval test shows it
    sentence_spans: tuple[tuple[int, int], ...] = ()
    sentence_scores: tuple[float, ...] = ()
    # Other documents holding the same passage (a measure republished by several offices),
    # collapsed into this hit so that copies do not crowd out the rest of the list.
    also_in: tuple[str, ...] = ()


def page_of(meta: dict[str, str], offset: int) -> int | None:
    """The page `offset` of a chunk's text is on, from its CHUNK_FIELDS (None: no pages)."""
    if not meta.get("page"):
        return None
    breaks = [int(b) for b in meta.get("page_breaks", "").split(",") if b]
    return int(meta["page"]) + sum(b <= max(offset, 0) for b in breaks)


@dataclass(frozen=True)
class Citation:
    n: int
    doc_id: str
    chunk_id: str
    title: str
    date: str
    source: str
    text: str
    score: float
    quotes: tuple[str, ...] = ()  # the sentences of `text` the answer used
    also_in: tuple[str, ...] = ()  # other documents with the same passage (Hit.also_in)
    kb: str = ""  # the knowledge base of its document
    page: int | None = None  # 1-based, for paged formats (PDF)
    article: str | None = None  # the article the quoted sentence is in (第七条)
    has_original: bool = False  # its file is kept and served (GET …/original)

    @classmethod
    def of(cls, n: int, hit: Hit, quotes: tuple[str, ...]) -> Citation:
        """Passage `hit` cited as [n], quoting `quotes` from it: the one place both
        answerers build citations."""
        meta = hit.chunk.meta
        offset = max(hit.chunk.text.find(quotes[0]), 0) if quotes else 0
        return cls(
            n=n,
            doc_id=hit.chunk.doc_id,
            chunk_id=hit.chunk.chunk_id,
            title=meta.get("title", ""),
            date=meta.get("date", ""),
            source=meta.get("source", ""),
            text=hit.chunk.text,
            score=hit.score,
            quotes=quotes,
            also_in=hit.also_in,
            kb=meta.get("kb", ""),
            page=page_of(meta, offset),
            article=article_at(hit.chunk.text, offset, meta.get("article", "")) or None,
        )


@dataclass(frozen=True)
class Related:
    """A relevant clause the answer did not quote (相关条款), shown collapsed below it."""

    text: str
    doc_id: str
    chunk_id: str
    title: str
    article: str | None = None

    @classmethod
    def of(cls, hit: Hit, text: str, start: int) -> Related:
        """The sentence `text` at offset `start` of passage `hit`."""
        meta = hit.chunk.meta
        return cls(
            text=text,
            doc_id=hit.chunk.doc_id,
            chunk_id=hit.chunk.chunk_id,
            title=meta.get("title", ""),
            article=article_at(hit.chunk.text, start, meta.get("article", "")) or None,
        )


@dataclass
class Answer:
    question: str
    answer: str
    refused: bool
    citations: list[Citation] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)  # everything retrieved; not serialised
    # What retrieval searched for: the question itself, or with a follow-up, the question
    # made standalone from the conversation.
    standalone_question: str = ""
    unverified: list[str] = field(default_factory=list)  # generated sentences whose figures
    # no cited passage contains (LLM answers only)
    notice: str = ""  # e.g. that the LLM failed and this is the extractive answer
    # Places and years the question names that no cited passage mentions (rag.scope)
    out_of_scope: list[str] = field(default_factory=list)
    generation: int = 0  # the index generation every citation comes from
    fallback: str = ""  # why an LLM answer was replaced by the extractive one (for the log)
    related: list[Related] = field(default_factory=list)  # extractive answers only
    # With the reading model: the span the answer leads with, and the model's confidence
    # in the best span it found (also for a refusal: how close it came).
    span: str = ""
    confidence: float | None = None
    # What refusal weighed (the reader's confidence, the excerpt evidence): for the log
    # and the calibration bench; not serialised.
    signals: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        """The `rag ask --json` object fixed by DESIGN.md."""
        return {
            "question": self.question,
            "answer": self.answer,
            "refused": self.refused,
            "citations": [
                {
                    "n": c.n,
                    "doc_id": c.doc_id,
                    "kb": c.kb,
                    "page": c.page,
                    "article": c.article,
                    "has_original": c.has_original,
                    "chunk_id": c.chunk_id,
                    "title": c.title,
                    "date": c.date,
                    "source": c.source,
                    "text": c.text,
                    "score": round(c.score, 4),
                    "quotes": list(c.quotes),
                    "also_in": list(c.also_in),
                }
                for c in self.citations
            ],
            "standalone_question": self.standalone_question or self.question,
            "unverified": list(self.unverified),
            "notice": self.notice,
            "out_of_scope": list(self.out_of_scope),
            "generation": self.generation,
            "related": [asdict(r) for r in self.related],
            "span": self.span,
            "confidence": None if self.confidence is None else round(self.confidence, 4),
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
        }
