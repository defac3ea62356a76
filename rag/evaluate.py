"""Evaluation runs: ask every question of a set, score retrieval, answers and refusals."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rag.chain import open_index
from rag.config import Settings
from rag.ingest import Progress, ingest
from rag.metrics import (
    Question,
    answer_correct,
    first_gold_rank,
    hit_at,
    percentile,
    reciprocal_rank,
)
from rag.split import split_sentences
from rag.types import Answer


class EvalSetError(ValueError):
    """A question set we cannot use; the message names the line and the problem."""


def load_questions(path: Path) -> list[Question]:
    """The questions of a set file; an EvalSetError names the first wrong line and why."""
    questions, seen = [], set()
    for line_no, data in enumerate(path.read_bytes().splitlines(), 1):
        where = f"{path}:{line_no}"
        try:
            line = data.decode("utf-8-sig" if line_no == 1 else "utf-8")
        except UnicodeDecodeError:
            raise EvalSetError(f"{where}: not UTF-8 text") from None
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as err:
            raise EvalSetError(f"{where}: not valid JSON ({err})") from None
        if not isinstance(raw, dict) or not str(raw.get("question", "")).strip():
            raise EvalSetError(f'{where}: needs a non-empty "question"')
        problem = _field_problem(raw)
        if problem:
            raise EvalSetError(f"{where}: {problem}")
        qid = str(raw.get("id") or f"q{line_no}")
        if qid in seen:
            raise EvalSetError(f"{where}: duplicate id {qid!r}")
        seen.add(qid)
        answers = raw.get("answers") or []
        expect_refusal = bool(raw.get("expect_refusal"))
        out_of_scope = bool(raw.get("out_of_scope"))
        if not answers and not (expect_refusal or out_of_scope):
            raise EvalSetError(
                f'{where}: "answers" must be a non-empty list unless expect_refusal or out_of_scope'
            )
        questions.append(
            Question(
                id=qid,
                question=str(raw["question"]),
                answers=answers,
                gold_docs=[str(d) for d in raw.get("gold_docs") or []],
                expect_refusal=expect_refusal,
                out_of_scope=out_of_scope,
                kind=str(raw.get("kind", "")),
            )
        )
    if not questions:
        raise EvalSetError(f"{path}: no questions")
    return questions


def _field_problem(raw: dict) -> str:
    """What is wrong with a question's fields, or "". Checked strictly because a wrong type
    would not fail but mis-score: "false" is true, a string of gold docs is its characters."""

    def text_or_number(value: object) -> bool:
        return isinstance(value, str | int | float) and not isinstance(value, bool)

    if "id" in raw and not text_or_number(raw["id"]):
        return '"id" must be a string'
    for flag in ("expect_refusal", "out_of_scope"):
        if raw.get(flag) is not None and not isinstance(raw[flag], bool):
            return (
                f'"{flag}" must be true or false, not {json.dumps(raw[flag], ensure_ascii=False)}'
            )
    answers = raw.get("answers") or []
    if not isinstance(answers, list):
        return '"answers" must be a list'
    for item in answers:
        alternatives = item if isinstance(item, list) else [item]
        if not alternatives or not all(text_or_number(a) and str(a).strip() for a in alternatives):
            return (
                '"answers" items must be non-empty strings, or non-empty lists of them '
                f"(alternatives); got {json.dumps(item, ensure_ascii=False)}"
            )
    gold = raw.get("gold_docs") or []
    if not isinstance(gold, list) or not all(text_or_number(d) for d in gold):
        return '"gold_docs" must be a list of document ids'
    return ""


@dataclass
class Row:
    """One question's outcome: what the per-question report shows."""

    id: str
    question: str
    kind: str
    expected: list
    expect_refusal: bool
    out_of_scope: bool  # expected: refused, or answered with a caveat naming what is missing
    gold_docs: list[str]
    answer: str
    refused: bool
    ranked_docs: list[str]
    gold_rank: int  # 1-based rank of the first gold document among retrieved docs, 0 = none
    correct: bool  # answerable: right answer; expect_refusal: refused; out_of_scope: either
    # refused or caveated
    first_correct: bool  # answerable: the answer's first sentence alone is right
    cited: int
    cited_good: int  # citations from a gold document or quoting an answer item
    latency_ms: float
    citations: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def failure(self) -> str | None:
        """Why the question failed, or None: `wrong_answer`, `wrongly_refused` (an
        answerable question refused), `missed_refusal` (answered although it must be
        refused), `missed_scope_caveat` (out of scope, answered without the caveat)."""
        if self.correct:
            return None
        if self.out_of_scope:
            return "missed_scope_caveat"
        if self.expect_refusal:
            return "missed_refusal"
        return "wrongly_refused" if self.refused else "wrong_answer"

    def outcome(self) -> dict:
        """The row as `rag eval --json` lists it: enough to compare with a later run."""
        return {
            "id": self.id,
            "correct": self.correct,
            "refused": self.refused,
            "failure": self.failure,
        }


def score(question: Question, answer: Answer, latency_ms: float) -> Row:
    ranked = [h.chunk.doc_id for h in answer.hits]
    good = sum(
        any(doc in question.gold_docs for doc in (c.doc_id, *c.also_in))
        or any(answer_correct(c.text, [item]) for item in question.answers)
        for c in answer.citations
    )
    first = next(iter(split_sentences(answer.answer)), "")
    if question.out_of_scope:
        correct, first_correct = answer.refused or bool(answer.out_of_scope), False
    elif question.expect_refusal:
        correct, first_correct = answer.refused, False
    else:
        correct = not answer.refused and answer_correct(answer.answer, question.answers)
        first_correct = not answer.refused and answer_correct(first, question.answers)
    return Row(
        id=question.id,
        question=question.question,
        kind=question.kind,
        expected=question.answers,
        expect_refusal=question.expect_refusal,
        out_of_scope=question.out_of_scope,
        gold_docs=question.gold_docs,
        answer=answer.answer,
        refused=answer.refused,
        ranked_docs=ranked,
        gold_rank=first_gold_rank(
            [(h.chunk.doc_id, *h.also_in) for h in answer.hits], question.gold_docs
        ),
        correct=correct,
        first_correct=first_correct,
        cited=len(answer.citations),
        cited_good=good,
        latency_ms=latency_ms,
        citations=answer.to_json()["citations"],
    )


def summarise(rows: Sequence[Row]) -> dict:
    """The metrics object (definitions in evals/README.md)."""
    answerable = [r for r in rows if not (r.expect_refusal or r.out_of_scope)]
    scoped = [r for r in rows if r.out_of_scope]
    in_scope = [r for r in rows if not r.out_of_scope]
    with_gold = [r for r in answerable if r.gold_docs]
    cited = sum(r.cited for r in answerable)

    def mean(values: Sequence[float]) -> float | None:
        return round(statistics.fmean(values), 4) if values else None

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 1)

    return {
        "n": len(rows),
        "answerable": len(answerable),
        "unanswerable": len(in_scope) - len(answerable),
        "out_of_scope": len(scoped),
        "hit@1": mean([hit_at(r.gold_rank, 1) for r in with_gold]),
        "hit@5": mean([hit_at(r.gold_rank, 5) for r in with_gold]),
        "mrr@10": mean([reciprocal_rank(r.gold_rank, 10) for r in with_gold]),
        "answer_acc": mean([float(r.correct) for r in answerable]),
        "answer_first_acc": mean([float(r.first_correct) for r in answerable]),
        "citation_precision": round(sum(r.cited_good for r in answerable) / cited, 4)
        if cited
        else None,
        "refusal_acc": mean([float(r.refused == r.expect_refusal) for r in in_scope]),
        "scope_acc": mean([float(r.correct) for r in scoped]),
        "answer_chars_p50": percentile([len(r.answer) for r in answerable if not r.refused], 50),
        "latency_ms": {
            "p50": rounded(percentile([r.latency_ms for r in rows], 50)),
            "p95": rounded(percentile([r.latency_ms for r in rows], 95)),
        },
    }


def run(
    ask: Callable[[str], Answer],
    questions: Sequence[Question],
    progress: Callable[[], None] = lambda: None,
) -> list[Row]:
    """Ask each question in turn (the model is loaded before the first is timed)."""
    if questions:
        ask(questions[0].question)  # warm-up: load the model and the indexes
    rows = []
    for q in questions:
        started = time.perf_counter()
        answer = ask(q.question)
        rows.append(score(q, answer, (time.perf_counter() - started) * 1000))
        progress()
    return rows


def open_set_index(settings: Settings, eval_set: Path, progress: Progress | None = None):
    """The index a set is run against, and the ingest report when the set brings its own
    corpus: a folder set's docs.jsonl is indexed into a collection of its own (cached)."""
    if not eval_set.is_dir():
        return open_index(settings), None
    docs = eval_set / "docs.jsonl"
    if not docs.is_file():
        raise EvalSetError(f"{eval_set} has no docs.jsonl (a folder set needs its own corpus)")
    index = open_index(settings, set_collection(docs))
    report = ingest([docs], index, settings.chunk_size, settings.chunk_overlap, progress=progress)
    return index, report


def set_collection(docs_path: Path) -> str:
    """The collection a set's own corpus is indexed into: named after its content hash, so
    an unchanged set is found again (no embedding) and a changed one gets a fresh index."""
    import hashlib

    digest = hashlib.sha256()
    with docs_path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    name = "".join(ch if ch.isalnum() else "-" for ch in docs_path.parent.name)[:20]
    return f"eval-{name}-{digest.hexdigest()[:12]}"
