"""Evaluation metrics: pure functions over questions, ranked doc ids and answers."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: list = field(default_factory=list)  # items; an item that is a list = alternatives
    gold_docs: list[str] = field(default_factory=list)
    expect_refusal: bool = False
    out_of_scope: bool = False  # about a place or year the corpus lacks: refuse or caveat
    kind: str = ""


def _norm(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower().replace(" ", "")


def answer_correct(answer: str, items: Sequence) -> bool:
    """Every top-level item must appear in `answer`; a list item is a set of alternatives.
    Compared after NFKC, lower-casing and removing spaces (so ４０% matches 40%)."""
    text = _norm(answer)
    if not items:
        return False
    for item in items:
        options = item if isinstance(item, list) else [item]
        if not any(_norm(str(o)) in text for o in options):
            return False
    return True


def first_gold_rank(ranked_docs: Sequence[str | Sequence[str]], gold: Sequence[str]) -> int:
    """1-based rank of the first gold document among distinct ranked docs, 0 if absent.

    An item may be a group: a hit's document and the other documents holding the same
    passage (`Hit.also_in`). It takes one place, and it is the gold document when any of
    its documents is: a measure republished word for word by another office is the same
    answer, whichever copy the set's author happened to read."""
    seen: set[str] = set()
    position = 0
    for item in ranked_docs:
        docs = (item,) if isinstance(item, str) else tuple(item)
        if docs[0] in seen:
            continue
        position += 1
        seen.update(docs)
        if any(doc in gold for doc in docs):
            return position
    return 0


def hit_at(rank: int, k: int) -> float:
    return float(0 < rank <= k)


def reciprocal_rank(rank: int, cutoff: int = 10) -> float:
    return 1.0 / rank if 0 < rank <= cutoff else 0.0


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile, or None for no values (a metric the set cannot measure)."""
    return float(np.percentile(values, q)) if len(values) else None
