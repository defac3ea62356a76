from pathlib import Path

import pytest

from rag.evaluate import EvalSetError, load_questions, score, summarise
from rag.metrics import Question
from rag.types import Answer, Chunk, Citation, Hit

REPO = Path(__file__).resolve().parents[1]


def answer(text: str, refused: bool, docs: list[str], cited: list[tuple[str, str]]) -> Answer:
    hits = [Hit(Chunk(f"{d}#0", d, 0, "", 0, 0, {}), 1.0) for d in docs]
    citations = [Citation(n, d, f"{d}#0", "", "", "", t, 1.0) for n, (d, t) in enumerate(cited, 1)]
    return Answer("q", text, refused, citations, hits=hits)


def test_a_row_records_rank_correctness_and_good_citations():
    q = Question("q1", "外资奖励多少？", ["2%", "1000万元"], ["gold.md"])
    row = score(
        q,
        answer(
            "按2%奖励，最高1000万元。[1]",
            False,
            ["x.md", "gold.md", "gold.md"],
            [("x.md", "无关"), ("y.md", "最高1000万元")],
        ),
        12.0,
    )
    assert (row.gold_rank, row.correct, row.cited, row.cited_good) == (2, True, 2, 1)


def test_refusals_are_right_only_when_expected():
    must_refuse = Question("r", "天气？", [], [], expect_refusal=True)
    assert score(must_refuse, answer("知识库中没有找到…", True, [], []), 1.0).correct
    answerable = Question("a", "外资？", ["2%"], ["g"])
    assert not score(answerable, answer("知识库中没有找到…", True, [], []), 1.0).correct


def test_summary_metrics_follow_their_definitions():
    rows = [
        score(
            Question("a", "?", ["2%"], ["g"]), answer("2%[1]", False, ["g"], [("g", "2%")]), 10.0
        ),
        score(
            Question("b", "?", ["3%"], ["g"]),
            answer("5%[1]", False, ["x", "y", "g"], [("x", "5%")]),
            20.0,
        ),
        score(Question("c", "?", [], [], expect_refusal=True), answer("拒答", True, [], []), 30.0),
        score(
            Question("d", "?", [], [], expect_refusal=True),
            answer("乱答[1]", False, ["x"], [("x", "")]),
            40.0,
        ),
    ]
    m = summarise(rows)
    assert (m["n"], m["answerable"], m["unanswerable"]) == (4, 2, 2)
    assert m["hit@1"] == 0.5 and m["hit@5"] == 1.0 and m["mrr@10"] == round((1 + 1 / 3) / 2, 4)
    assert m["answer_acc"] == 0.5
    assert m["citation_precision"] == 0.5  # only answerable questions' citations count
    assert m["refusal_acc"] == 0.75  # a, b, c right; d answered
    assert m["latency_ms"] == {"p50": 25.0, "p95": 38.5}


def test_a_set_without_gold_or_answers_reports_null_not_zero():
    rows = [
        score(Question("c", "?", [], [], expect_refusal=True), answer("拒答", True, [], []), 5.0)
    ]
    m = summarise(rows)
    assert m["hit@1"] is None and m["answer_acc"] is None and m["answer_chars_p50"] is None


def test_answer_first_acc_asks_the_first_sentence_alone_for_every_fact():
    question = Question("a", "首年补贴多少？最高多少？", ["50%", "100万元"], ["g"])
    leads = answer("首年按实际租金的50%给予补贴，最高100万元。[1]其余按30%。[1]", False, ["g"], [])
    trails = answer(
        "补贴分三年发放。[1]首年按实际租金的50%给予补贴，最高100万元。[1]", False, ["g"], []
    )
    split = answer("首年按50%补贴；[1]最高100万元。[1]", False, ["g"], [])
    rows = [score(question, a, 1.0) for a in (leads, trails, split)]
    assert [(r.correct, r.first_correct) for r in rows] == [
        (True, True),
        (True, False),
        (True, False),
    ]
    assert summarise(rows)["answer_first_acc"] == round(1 / 3, 4)
    refused = score(question, answer("知识库中没有找到…", True, [], []), 1.0)
    assert not refused.first_correct


def test_scope_acc_counts_refusals_and_caveats_and_keeps_them_out_of_the_other_metrics():
    question = Question("s", "上海市楼宇经济政策对租金补贴多少？", [], [], out_of_scope=True)
    caveated = answer("第一年补贴50%。[1]", False, ["g"], [("g", "第一年补贴50%。")])
    caveated.out_of_scope = ["上海市"]
    silent = answer("第一年补贴50%。[1]", False, ["g"], [("g", "第一年补贴50%。")])
    refused = answer("知识库中没有找到…", True, [], [])
    rows = [score(question, a, 1.0) for a in (caveated, silent, refused)]
    assert [r.correct for r in rows] == [True, False, True]
    answerable = score(Question("a", "?", ["2%"], ["g"]), answer("2%[1]", False, ["g"], []), 1.0)
    m = summarise([*rows, answerable])
    assert m["scope_acc"] == round(2 / 3, 4) and m["out_of_scope"] == 3
    assert (m["answerable"], m["unanswerable"], m["refusal_acc"]) == (1, 0, 1.0)
    assert m["answer_acc"] == 1.0  # a caveated answer is not an answer to score


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (
            '{"id": "x", "question": "外资？", "answers": ["2%"], "expect_refusal": "false"}',
            "true or false",
        ),
        ('{"id": "x", "question": "外资？", "answers": "2%"}', '"answers" must be a list'),
        ('{"id": "x", "question": "外资？", "answers": [[]]}', "non-empty lists"),
        ('{"id": "x", "question": "外资？", "answers": [{"a": 1}]}', "non-empty strings"),
        (
            '{"id": "x", "question": "外资？", "answers": ["2%"], "gold_docs": "a.md"}',
            '"gold_docs"',
        ),
        ('{"id": ["x"], "question": "外资？", "answers": ["2%"]}', '"id" must be a string'),
        ('{"id": "x", "question": "外资？"}', '"answers" must be a non-empty list'),
        ("{oops", "not valid JSON"),
    ],
)
def test_a_bad_set_line_is_named_with_what_is_wrong(tmp_path, line, problem):
    """A wrong type would not fail but mis-score ("false" is truthy), so it is an error
    that names the line."""
    path = tmp_path / "s.jsonl"
    good = '{"id": "ok", "question": "外资奖励多少？", "answers": ["2%"]}'
    path.write_text(f"{good}\n\n{line}\n", "utf-8")
    with pytest.raises(EvalSetError) as err:
        load_questions(path)
    assert str(err.value).startswith(f"{path}:3: ") and problem in str(err.value)


def test_a_line_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_bytes(
        '\ufeff{"question": "外资？", "answers": ["2%"]}\n'.encode()
        + '{"question": "外资？", "answers": ["2%"]}\n'.encode("gbk")
    )
    with pytest.raises(EvalSetError, match=r"s\.jsonl:2: not UTF-8"):
        load_questions(path)


def test_the_shipped_sets_load():
    for name in ("project.jsonl", "comparisons.jsonl"):
        assert load_questions(REPO / "evals" / name)


def test_a_failed_row_says_why_it_failed():
    answerable = Question("a", "外资？", ["2%"], ["g"])
    must_refuse = Question("r", "天气？", [], [], expect_refusal=True)
    elsewhere = Question("s", "上海租金补贴？", [], [], out_of_scope=True)
    refusal = answer("知识库中没有找到…", True, [], [])
    wrong = answer("按5%奖励。[1]", False, ["g"], [("g", "5%")])
    reasons = [
        score(answerable, answer("按2%奖励。[1]", False, ["g"], [("g", "2%")]), 1.0).failure,
        score(answerable, wrong, 1.0).failure,
        score(answerable, refusal, 1.0).failure,
        score(must_refuse, wrong, 1.0).failure,
        score(must_refuse, refusal, 1.0).failure,
        score(elsewhere, wrong, 1.0).failure,
    ]
    assert reasons == [
        None,
        "wrong_answer",
        "wrongly_refused",
        "missed_refusal",
        None,
        "missed_scope_caveat",
    ]
    outcome = score(answerable, refusal, 1.0).outcome()
    assert outcome == {"id": "a", "correct": False, "refused": True, "failure": "wrongly_refused"}
