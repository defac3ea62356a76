import pytest

from rag.feedback import FeedbackStore

ANSWER = {
    "question": "外资奖励多少？",
    "answer": "按2%奖励。[1]",
    "refused": False,
    "citations": [{"n": 1, "doc_id": "policies/foreign-investment-awards.md"}],
}


def test_ratings_are_stored_with_question_answer_and_citations(tmp_path):
    store = FeedbackStore(tmp_path / "data" / "feedback.sqlite")
    store.add(1, ANSWER, "s1")
    store.add(-1, {**ANSWER, "refused": True, "citations": []}, "s2")
    rows = FeedbackStore(tmp_path / "data" / "feedback.sqlite").all()
    assert [(r["rating"], r["session"], r["refused"]) for r in rows] == [
        (1, "s1", 0),
        (-1, "s2", 1),
    ]
    assert rows[0]["citations"][0]["doc_id"] == "policies/foreign-investment-awards.md"


def test_only_thumbs_up_or_down(tmp_path):
    with pytest.raises(ValueError, match="rating"):
        FeedbackStore(tmp_path / "f.sqlite").add(5, ANSWER)
