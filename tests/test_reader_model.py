"""The shipped reading model, for real (no stand-in): the answers it leads with over
corpus/, its refusals, and the switch that turns it off."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.chain import build_assistant
from rag.config import Settings

EXCERPTS = Path(__file__).parent / "data" / "excerpt_answers.json"
PROJECT = Path(__file__).resolve().parents[1] / "evals" / "project.jsonl"


def test_without_the_reader_the_answers_are_those_from_before_it(corpus_index):
    """RAG_READER=none: every project question answered word for word as the release
    before the reading model answered it (tests/data/excerpt_answers.json, written by
    that release over the same corpus)."""
    assistant = build_assistant(Settings(reader="none"), corpus_index)
    expected = json.loads(EXCERPTS.read_text("utf-8"))
    questions = [json.loads(line) for line in PROJECT.read_text("utf-8").splitlines() if line]
    assert {q["id"] for q in questions} == expected.keys()
    for q in questions:
        answer = assistant.ask(q["question"])
        got = {"answer": answer.answer, "refused": answer.refused}
        got["related"] = [r.text for r in answer.related]
        assert got == expected[q["id"]], q["id"]
        assert answer.span == "" and answer.confidence is None


@pytest.fixture(scope="module")
def reading(corpus_index):
    return build_assistant(Settings(), corpus_index)
