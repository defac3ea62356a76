"""Generative answers through an OpenAI-compatible endpoint (vLLM, Ollama, DeepSeek,
Qwen-compatible APIs) with langchain-openai: the one module that talks to an LLM.

Every answer is checked (rag.grounding) before anyone sees it, and any failure of the
endpoint — timeout, refused connection, bad reply — falls back to the extractive answer
with a notice, so the chat never hangs on the LLM.
"""

from __future__ import annotations

import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.answer import ExtractiveAnswerer
from rag.grounding import MarkerStream, check, says_not_covered, supporting_sentences
from rag.history import Message, format_history
from rag.types import Answer, Citation, Hit

FALLBACK_NOTICE = "大模型服务暂时不可用，以下为知识库原文摘录。"

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
        texts[name] = text
    return Prompts(**texts)


def chat_model(base_url: str, model: str, api_key: str, timeout: float, temperature: float):
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
    )


class LLMUnavailable(RuntimeError):
    """The endpoint did not give a usable reply (timeout, connection, HTTP error)."""


class LLMAnswerer:
    """Answers with the LLM from the first `k` hits, checked; falls back to `fallback`."""

    def __init__(self, llm, prompts: Prompts, fallback: ExtractiveAnswerer, max_chars: int = 300):
        self.llm = llm
        self.prompts = prompts
        self.fallback = fallback
        self.max_chars = max_chars

    def messages(self, question: str, hits: Sequence[Hit]) -> list[tuple[str, str]]:
        passages = "\n\n".join(
            self.prompts.passage.format(
                n=n,
                title=h.chunk.meta.get("title") or h.chunk.doc_id,
                date=h.chunk.meta.get("date") or "日期不详",
                source=h.chunk.meta.get("source") or "来源不详",
                text=h.chunk.text,
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
        """The follow-up rewritten by the model as a standalone question."""
        prompt = self.prompts.condense.format(history=format_history(history), question=question)
        try:
            text = str(self.llm.invoke([("human", prompt)]).content).strip()
        except Exception as exc:  # openai and httpx raise many kinds; all mean "no reply"
            raise LLMUnavailable(f"{type(exc).__name__}: {exc}") from exc
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[0] if lines else question

    def stream(self, question: str, hits: Sequence[Hit], k: int) -> Iterator[str | Answer]:
        """Pieces of the answer as the model writes them (markers that name no passage
        already removed), then the checked `Answer`. On any failure of the endpoint the
        `Answer` is the extractive one with a notice."""
        shown = list(hits[:k])
        if not shown:
            yield self.fallback.answer(question, hits, k)
            return
        markers = MarkerStream(set(range(1, len(shown) + 1)))
        parts: list[str] = []
        try:
            for chunk in self.llm.stream(self.messages(question, shown)):
                if piece := markers.feed(str(chunk.content or "")):
                    parts.append(piece)
                    yield piece
        except Exception:  # openai and httpx raise many kinds; all mean "no reply"
            yield self.unavailable(question, hits, k)
            return
        if tail := markers.flush():
            parts.append(tail)
            yield tail
        yield self.finish(question, "".join(parts), shown)

    def unavailable(self, question: str, hits: Sequence[Hit], k: int) -> Answer:
        """The extractive answer, saying why it is not the model's."""
        answer = self.fallback.answer(question, hits, k)
        answer.notice = FALLBACK_NOTICE
        return answer

    def answer(self, question: str, hits: Sequence[Hit], k: int) -> Answer:
        *_, final = self.stream(question, hits, k)
        return final

    def finish(self, question: str, raw: str, shown: Sequence[Hit]) -> Answer:
        """Check the model's text: markers naming no passage go, every figure must be in
        a passage its sentence cites, and "the material does not say" is a refusal.

        Citations keep the numbers the passages had in the prompt, so text streamed
        before the check and the checked answer carry the same markers."""
        checked = check(raw.strip(), {n: h.chunk.text for n, h in enumerate(shown, 1)})
        if not checked.cited and (not checked.text or says_not_covered(checked.text)):
            return Answer(question=question, answer=self.prompts.no_answer, refused=True)
        citations = [
            Citation(
                n=n,
                doc_id=shown[n - 1].chunk.doc_id,
                chunk_id=shown[n - 1].chunk.chunk_id,
                title=shown[n - 1].chunk.meta.get("title", ""),
                date=shown[n - 1].chunk.meta.get("date", ""),
                source=shown[n - 1].chunk.meta.get("source", ""),
                text=shown[n - 1].chunk.text,
                score=shown[n - 1].score,
                quotes=supporting_sentences(checked.text, n, shown[n - 1].chunk.text),
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
