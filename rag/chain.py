"""The question-answering chain, wired from the one `Settings` object.

question (+ history) → standalone question → one question per compared item (“A和B分别…”)
→ retrieve (hybrid) → [rerank] → answer (extractive, or an LLM checked by rag.grounding)
→ `Answer` with citations and timings.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from rag import scope
from rag.access import Principal
from rag.answer import REFUSAL, Answerer, ExtractiveAnswerer
from rag.articles import asked_article, covers
from rag.config import Settings
from rag.decompose import split_comparison
from rag.embed import LazyEmbeddings
from rag.history import Message, standalone_question, turns
from rag.index import Filters, Index
from rag.llm import LLMAnswerer, LLMUnavailable, chat_model, load_prompts
from rag.models.reader import BUNDLED_READER, Reader, ReaderError
from rag.reading import ReadingAnswerer
from rag.rerank import CrossEncoderReranker
from rag.retrieve import HybridRetriever, interleave
from rag.types import Answer, Chunk, Hit

SCOPE_FIELDS = ("title", "source", "region", "date")  # what a passage's document is about
SUPPORT_PASSAGES = 10  # retrieved beyond k only to corroborate candidate answers


class QuestionError(ValueError):
    """A question we refuse to process; the message is meant for the user."""


def open_index(
    settings: Settings,
    collection: str | None = None,
    writer_model: bool = False,
    fresh: bool = False,
) -> Index:
    """The configured index. With `writer_model`, ingest gets a model instance of its own
    (a server: answers never wait behind an embedding batch of a job); `fresh` forgets
    what the index held (--rebuild)."""

    def model() -> LazyEmbeddings:
        return LazyEmbeddings(
            settings.embedding_model,
            settings.data_dir,
            query_prefix=settings.query_prefix,
            passage_prefix=settings.passage_prefix,
            batch_size=settings.embed_batch_size,
            backend=settings.embed_backend,
        )

    embeddings = model()
    return Index(
        settings.data_dir,
        collection or settings.collection,
        embeddings,
        settings.chroma_url,
        writer_embeddings=model() if writer_model else None,
        fresh=fresh,
    )


def check_question(question: str, max_chars: int) -> str:
    """The question with blanks collapsed, or a `QuestionError` saying what is wrong."""
    question = " ".join(question.split())
    if not question:
        raise QuestionError("the question is empty")
    if len(question) > max_chars:
        raise QuestionError(
            f"the question is {len(question)} characters long; the limit is {max_chars}"
        )
    return question


def kb_names(kbs: str | Sequence[str] | None) -> list[str]:
    """The knowledge bases a request names (a name or several; blanks ignored)."""
    names = [kbs] if isinstance(kbs, str) else list(kbs or ())
    return [n.strip() for n in names if n and n.strip()]


def check_kbs(
    index: Index, kbs: str | Sequence[str] | None, visible: frozenset[str] | None = None
) -> frozenset[str]:
    """The knowledge bases to search (empty = all), or a `QuestionError` naming one that
    does not exist (and listing those `visible` to the asker; None = all)."""
    names = kb_names(kbs)
    if not names:  # the usual case: no need to ask the manifest on every question
        return frozenset()
    known = {name for name, _, _ in index.manifest.kbs()}
    unknown = [n for n in names if n not in known]
    if visible is not None:
        known &= visible
    if unknown:
        raise QuestionError(
            f"unknown knowledge base {unknown[0]!r}; known: {', '.join(sorted(known)) or 'none'}"
        )
    return frozenset(names)


def granted_filters(
    index: Index,
    principal: Principal,
    kbs: str | Sequence[str] | None,
    filters: Filters | None = None,
) -> Filters:
    """`filters` narrowed to the knowledge bases asked for (`kbs`, none = all), within
    what `principal` may read: `Forbidden` for one not granted, `QuestionError` for one
    that does not exist. The grant travels in the filters into both retrievers."""
    principal.check_read(frozenset(kb_names(kbs)))
    readable = principal.readable()
    return replace(filters or Filters(), kbs=check_kbs(index, kbs, readable), readable=readable)


def check_k(k: int) -> int:
    if not 1 <= k <= 50:
        raise QuestionError(f"k must be between 1 and 50, got {k}")
    return k


@dataclass
class Assistant:
    retriever: HybridRetriever
    answerer: Answerer
    k: int = 5
    max_question_chars: int = 500
    reranker: CrossEncoderReranker | None = None
    # Answers computed at once (waiting for an LLM takes no slot). More threads than this
    # would only take turns at the GIL and the 2 cores, and starve the event loop that
    # answers /healthz; the rest wait without holding either.
    cpu_slots: threading.Semaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(3 * (os.cpu_count() or 1))
    )

    def ask(
        self,
        question: str,
        k: int | None = None,
        filters: Filters | None = None,
        history: Sequence[Message] = (),
    ) -> Answer:
        *_, answer = self.stream(question, k, filters, history)
        return answer

    def stream(
        self,
        question: str,
        k: int | None = None,
        filters: Filters | None = None,
        history: Sequence[Message] = (),
    ) -> Iterator[str | Answer]:
        """Pieces of a generated answer as they are written (none for extractive
        answers), then the `Answer`. A bad question raises `QuestionError` on the first
        `next()`, before any work is done."""
        question = check_question(question, self.max_question_chars)
        k = check_k(self.k if k is None else k)
        history = turns(history)
        started = time.perf_counter()
        timings: dict[str, float] = {}
        unavailable = ""
        standalone = standalone_question(history, question)
        if history:
            try:
                standalone = self.answerer.condense(history, question) or standalone
            except LLMUnavailable as exc:
                unavailable = f"condense: {exc}"  # don't wait for it a second time to answer
            timings["condense_ms"] = (time.perf_counter() - started) * 1000
        clock = time.perf_counter()
        parts = []
        # One generation for the whole answer; a CPU slot while the work is ours to do.
        with self.cpu_slots, self.retriever.index.reading() as snapshot:
            # Only a question that stands alone is split: a follow-up joined to the question
            # before it would carry that question's items into every part.
            for part in split_comparison(standalone) if standalone == question else [standalone]:
                part_timings: dict[str, float] = {}
                part_hits = self.retriever.search(
                    part, max(k, SUPPORT_PASSAGES), filters, timings=part_timings, snapshot=snapshot
                )
                if self.reranker:
                    part_hits = self.reranker.rerank(part, part_hits, part_timings)
                part_hits = asked_article_first(part, part_hits)
                for name, ms in part_timings.items():
                    timings[name] = timings.get(name, 0.0) + ms
                parts.append((part, part_hits))
        hits = interleave([part_hits for _, part_hits in parts])
        timings["retrieve_ms"] = (time.perf_counter() - clock) * 1000
        clock = time.perf_counter()
        with self.cpu_slots if self.answerer.local else contextlib.nullcontext():
            for item in self.answerer.stream(standalone, parts, hits, k, unavailable):
                if isinstance(item, str):
                    yield item  # a remote model's words: no slot is held while they come
                else:
                    answer = item
        timings["answer_ms"] = (time.perf_counter() - clock) * 1000
        timings["total_ms"] = (time.perf_counter() - started) * 1000
        if not answer.refused:
            check_scope(parts, answer, snapshot.document_text)
            unknown = [m for m in answer.out_of_scope if scope.is_document_number(m)]
            if unknown and self.answerer.local and len(parts) == 1:
                # A document the knowledge base lacks: any figure quoted would be another
                # document's. (A remote model's words have streamed, and a comparison's
                # other items may be answered: they keep the caveat.) out_of_scope still
                # says which number, for the API and `rag eval`.
                answer = Answer(question=question, answer=REFUSAL, refused=True)
                answer.out_of_scope = unknown
        manifest = self.retriever.index.manifest
        answer.citations = [
            replace(c, has_original=bool((entry := manifest.get(c.doc_id)) and entry.original))
            for c in answer.citations
        ]
        answer.question = question
        answer.standalone_question = standalone
        answer.timings_ms = timings
        answer.hits = hits
        answer.generation = snapshot.generation
        yield answer


def asked_article_first(question: str, hits: list[Hit]) -> list[Hit]:
    """For a question naming an article ("第十二条怎么规定的"), the passages holding that
    article first (in their order), the rest after: any answerer reads them first."""
    article = asked_article(question)
    if article is None:
        return hits
    holds = [covers(h.chunk.text, h.chunk.meta.get("article", ""), article) for h in hits]
    return [h for h, yes in zip(hits, holds, strict=True) if yes] + [
        h for h, yes in zip(hits, holds, strict=True) if not yes
    ]


def check_scope(
    parts: Sequence[tuple[str, Sequence[Hit]]],
    answer: Answer,
    document_text: Callable[[str], str],
) -> None:
    """Name, in front of the answer, the places, years and document numbers the question
    asks about that none of the documents cited for it (their text, title, issuer, region,
    date) mentions; each item of a comparison is checked against its own passages, so 上海 in
    "北京和上海的…分别" is not covered by 北京's."""
    cited = {c.chunk_id for c in answer.citations}
    missing: list[str] = []
    about: dict[str, Chunk] = {}
    for part, part_hits in parts:
        used = {h.chunk.doc_id: h.chunk for h in part_hits if h.chunk.chunk_id in cited}
        named = scope.asked(part)
        if not used or not named:
            continue
        evidence = [
            text
            for chunk in used.values()
            for text in (
                document_text(chunk.doc_id),
                *(chunk.meta.get(f, "") for f in SCOPE_FIELDS),
            )
        ]
        for name in named.missing(evidence):
            if name not in missing:
                missing.append(name)
                about.update(used)
    answer.out_of_scope = missing
    if missing:
        covered = [
            c.meta.get("region") or f"《{c.meta.get('title') or c.doc_id}》" for c in about.values()
        ]
        answer.notice = scope.caveat(missing, covered) + answer.notice


def load_reader(setting: str) -> Reader | None:
    """The reading model RAG_READER names (None for `none`); a missing or damaged one
    stops the start with what to do, never a silent fallback to excerpts."""
    if setting == "none":
        return None
    try:
        return Reader.load(BUNDLED_READER if setting == "bundled" else Path(setting))
    except ReaderError as err:
        raise RuntimeError(str(err)) from None


def build_assistant(settings: Settings, index: Index | None = None) -> Assistant:
    """The assistant the settings describe: extractive answers, or with `llm_base_url`
    set, the LLM's answers falling back to extractive ones."""
    index = index or open_index(settings)
    retriever = HybridRetriever(index=index, k=settings.k)
    answerer = ExtractiveAnswerer(
        idf=lambda token: index.lexical.idf(token),
        max_chars=settings.answer_max_chars,
        refusal_threshold=settings.refusal_threshold,
    )
    reader = load_reader(settings.reader)
    if reader is not None:
        answerer = ReadingAnswerer(
            reader, answerer, settings.reader_passages, settings.reader_refusal_threshold
        )
    if settings.llm_base_url:
        llm = chat_model(
            settings.llm_base_url,
            settings.llm_model,
            settings.llm_api_key,
            settings.llm_timeout,
            settings.llm_temperature,
            max_tokens=4 * settings.answer_max_chars,  # a Chinese character is 1–2 tokens
        )
        answerer = LLMAnswerer(
            llm,
            load_prompts(settings.prompts_dir),
            answerer,
            settings.answer_max_chars,
            settings.llm_timeout,
        )
    reranker = CrossEncoderReranker(settings.rerank_model) if settings.rerank_model else None
    return Assistant(retriever, answerer, settings.k, settings.max_question_chars, reranker)
