"""Generative answers through an OpenAI-compatible endpoint (vLLM, Ollama, DeepSeek,
Qwen-compatible APIs) with langchain-openai: the one module that talks to an LLM.

Every answer is checked (rag.grounding) before anyone sees it, and any failure of the
endpoint — timeout, refused connection, bad reply — falls back to the extractive answer
with a notice, so the chat never hangs on the LLM.
"""

from __future__ import annotations

import logging
import re
import string
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.answer import ExtractiveAnswerer, plain_brackets
from rag.grounding import (
    MarkerStream,
    check,
    says_not_covered,
    sentence_spans,
    supporting_sentences,
    unmarked,
)
from rag.history import Message, format_history
from rag.types import Answer, Citation, Hit

FALLBACK_NOTICE = "大模型服务暂时不可用，以下为知识库原文摘录。"
UNCITED_NOTICE = "大模型的回答没有标注出处，未予采用；以下为知识库原文摘录。"

log = logging.getLogger("rag.llm")
# What models put around a rewritten question: reasoning blocks, a label, quotes.
_THINKING = re.compile(r"<think>.*?</think>", re.S)
_LABEL = re.compile(r"^(?:改写后的问题|完整问题|问题)[:：]\s*")

# Each template and the placeholders it must use (prompts/README.md).
_TEMPLATES = {
    "system": {"refusal", "max_chars"},
    "answer": {"passages", "question"},
    "passage": {"n", "title", "date", "source", "text"},
    "condense": {"history", "question"},
    "no_answer": set(),
}


class PromptError(RuntimeError):
    """A prompt template that is missing or does not use its placeholders."""


@dataclass(frozen=True)
class Prompts:
    system: str
    answer: str
    passage: str
    condense: str
    no_answer: str


def load_prompts(folder: Path) -> Prompts:
    """Read and check the templates in `folder` (once, at start)."""
    texts = {}
    for name, required in _TEMPLATES.items():
        path = folder / f"{name}.txt"
        try:
            text = path.read_text("utf-8").strip()
        except OSError as err:
            raise PromptError(f"cannot read prompt {path}: {err.strerror or err}") from None
        used = {field for _, field, _, _ in string.Formatter().parse(text) if field}
        if missing := required - used:
            raise PromptError(f"{path} must use the placeholder(s) {sorted(missing)}")
        if unknown := used - required:
            raise PromptError(f"{path} uses unknown placeholder(s) {sorted(unknown)}")
        try:  # what parse() lets through but format() rejects: "{}", "{0}", "{x!z}"
            text.format(**dict.fromkeys(required, ""))
        except (IndexError, KeyError, ValueError) as err:
            raise PromptError(
                f"{path} is not a valid template ({err}); write {{{{ for a literal {{"
            ) from None
        texts[name] = text
    return Prompts(**texts)


def chat_model(
    base_url: str, model: str, api_key: str, timeout: float, temperature: float, max_tokens: int
):
    """A langchain ChatOpenAI for the endpoint; `import rag` works without the extra."""
    try:
        from langchain_openai import ChatOpenAI
    except ImportError:
        raise RuntimeError(
            "RAG_LLM_BASE_URL is set but langchain-openai is not installed: "
            "pip install 'policy-rag[llm]'"
        ) from None
    return ChatOpenAI(
        base_url=base_url,
        model=model or "default",
        api_key=api_key or "not-needed",  # local servers take any key
        timeout=timeout,
        max_retries=0,  # a retry doubles the wait of a user who is watching
        temperature=temperature,
        max_tokens=max_tokens,  # a model that rambles on is cut off, not waited for
    )


class LLMUnavailable(RuntimeError):
    """The endpoint did not give a usable reply (timeout, connection, HTTP error)."""


class LLMAnswerer:
    """Answers with the LLM from the first `k` hits, checked; falls back to `fallback`."""

    local = False  # waiting for the model takes no CPU slot

    def __init__(
        self,
        llm,
        prompts: Prompts,
        fallback: ExtractiveAnswerer,
        max_chars: int = 300,
        timeout: float = 30.0,
    ):
        self.llm = llm
        self.prompts = prompts
        self.fallback = fallback
        self.max_chars = max_chars
        self.timeout = timeout  # for the whole answer, not only for each network read

    def messages(self, question: str, hits: Sequence[Hit]) -> list[tuple[str, str]]:
        passages = "\n\n".join(
            self.prompts.passage.format(
                n=n,
                title=h.chunk.meta.get("title") or h.chunk.doc_id,
                date=h.chunk.meta.get("date") or "日期不详",
                source=h.chunk.meta.get("source") or "来源不详",
                text=plain_brackets(h.chunk.text),  # a footnote [2] is not passage 2
            )
            for n, h in enumerate(hits, 1)
        )
        system = self.prompts.system.format(
            refusal=self.prompts.no_answer, max_chars=self.max_chars
        )
        return [
            ("system", system),
            ("human", self.prompts.answer.format(passages=passages, question=question)),
        ]

    def condense(self, history: Sequence[Message], question: str) -> str:
        """The follow-up rewritten by the model as a standalone question, or "" when the
        reply is unusable (empty, or longer than a question can be)."""
        prompt = self.prompts.condense.format(history=format_history(history), question=question)
        try:
            text = str(self.llm.invoke([("human", prompt)]).content)
        except Exception as exc:  # openai and httpx raise many kinds; all mean "no reply"
            raise LLMUnavailable(f"{type(exc).__name__}: {exc}") from exc
        lines = [line.strip() for line in _THINKING.sub("", text).splitlines() if line.strip()]
        rewritten = _LABEL.sub("", lines[0]).strip("\"“”'") if lines else ""
        return rewritten if len(rewritten) <= max(4 * len(question), 200) else ""

    def stream(
        self,
        question: str,
        parts: Sequence[tuple[str, Sequence[Hit]]],
        hits: Sequence[Hit],
        k: int,
        unavailable: str = "",
    ) -> Iterator[str | Answer]:
        """Pieces of the answer as the model writes them (markers that name no passage
        already removed), then the checked `Answer`. The model answers the question whole
        from the parts' merged hits. When the endpoint fails, takes longer than `timeout`
        in all, or gives nothing usable (or is already known to be down: `unavailable`),
        the `Answer` is the extractive one with a notice."""
        if unavailable:
            yield self.unavailable(question, hits, k, reason=unavailable)
            return
        shown = list(hits[:k])
        if not shown:
            yield self.fallback.answer(question, hits, k)
            return
        markers = MarkerStream(set(range(1, len(shown) + 1)))
        pieces: list[str] = []
        deadline = time.monotonic() + self.timeout
        try:
            for chunk in self.llm.stream(self.messages(question, shown)):
                if piece := markers.feed(str(chunk.content or "")):
                    pieces.append(piece)
                    yield piece
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the answer took over {self.timeout:g} s")
        except Exception as exc:  # openai and httpx raise many kinds; all mean "no reply"
            yield self.unavailable(question, hits, k, reason=f"{type(exc).__name__}: {exc}")
            return
        if tail := markers.flush():
            pieces.append(tail)
            yield tail
        raw = "".join(pieces)
        if not raw.strip():  # e.g. a reasoning model that said it all in its reasoning
            yield self.unavailable(question, hits, k, reason="empty reply")
            return
        yield self.finish(question, raw, shown) or self.unavailable(
            question, hits, k, UNCITED_NOTICE, reason="reply cites no passage"
        )

    def unavailable(
        self,
        question: str,
        hits: Sequence[Hit],
        k: int,
        notice: str = FALLBACK_NOTICE,
        reason: str = "LLM unavailable",
    ) -> Answer:
        """The extractive answer, saying why it is not the model's (and logging why)."""
        log.warning("llm fallback to extractive answer: %s", reason)
        answer = self.fallback.answer(question, hits, k)
        answer.notice = notice
        answer.fallback = reason
        return answer

    def finish(self, question: str, raw: str, shown: Sequence[Hit]) -> Answer | None:
        """Check the model's text: markers naming no passage go, every figure must be in
        a passage its sentence cites, and an answer whose every sentence says "the material
        does not say" is a refusal. None when the text cites nothing otherwise: an
        answer without sources is not one this product gives.

        Citations keep the numbers the passages had in the prompt, so text streamed
        before the check and the checked answer carry the same markers."""
        checked = check(raw.strip(), {n: h.chunk.text for n, h in enumerate(shown, 1)})
        sentences = [unmarked(checked.text[a:b]) for a, b in sentence_spans(checked.text)]
        sentences = [s for s in sentences if s]
        if sentences and all(says_not_covered(s) for s in sentences):
            return Answer(question=question, answer=self.prompts.no_answer, refused=True)
        if not checked.cited or not sentences:
            return None
        citations = [
            Citation.of(
                n, shown[n - 1], supporting_sentences(checked.text, n, shown[n - 1].chunk.text)
            )
            for n in checked.cited
        ]
        return Answer(
            question=question,
            answer=checked.text,
            refused=False,
            citations=citations,
            unverified=checked.unverified,
        )
