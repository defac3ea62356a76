import json

import pytest

from rag.evaluate import Row
from rag.report import (
    BaselineError,
    ThresholdError,
    deltas,
    flips,
    load_baseline,
    load_thresholds,
    regression_gate,
    render_html,
    set_config_path,
    shortfalls,
)


def row(**kw) -> Row:
    base = dict(
        id="q1",
        question="外资奖励多少？",
        kind="figure",
        expected=["2%"],
        expect_refusal=False,
        out_of_scope=False,
        gold_docs=["a.md"],
        answer="按2%奖励。[1]",
        refused=False,
        ranked_docs=["a.md"],
        gold_rank=1,
        correct=True,
        first_correct=True,
        cited=1,
        cited_good=1,
        latency_ms=42.0,
        citations=[],
    )
    return Row(**{**base, **kw})


def test_config_sits_beside_the_set(tmp_path):
    assert set_config_path(tmp_path / "project.jsonl") == tmp_path / "project.toml"
    folder = tmp_path / "rgb-dev"
    folder.mkdir()
    assert set_config_path(folder) == tmp_path / "rgb-dev.toml"
    (folder / "eval.toml").write_text("", "utf-8")
    assert set_config_path(folder) == folder / "eval.toml"


def test_thresholds_are_read_from_the_min_table_and_unknown_names_rejected(tmp_path):
    config = tmp_path / "s.toml"
    config.write_text('[min]\n"hit@5" = 0.9\nanswer_acc = 0.75\n', "utf-8")
    assert load_thresholds(config) == {"hit@5": 0.9, "answer_acc": 0.75}
    config.write_text("[min]\nhit5 = 0.9\n", "utf-8")
    with pytest.raises(ThresholdError, match="unknown metric"):
        load_thresholds(config)
    assert load_thresholds(tmp_path / "missing.toml") == {}


def test_shortfalls_name_each_metric_below_its_threshold():
    metrics = {"hit@5": 0.8, "answer_acc": 0.9, "citation_precision": None}
    missed = shortfalls(metrics, {"hit@5": 0.85, "answer_acc": 0.9, "citation_precision": 0.5})
    assert missed == [
        "hit@5: 0.8000 < 0.85",
        "citation_precision: not measured by this set (needs 0.5)",
    ]


def test_deltas_cover_numbers_and_latency():
    now = {"hit@1": 0.9, "latency_ms": {"p50": 30.0, "p95": 60.0}, "set": "x"}
    before = {"hit@1": 0.8, "latency_ms": {"p50": 20.0, "p95": 70.0}}
    assert deltas(now, before) == {"hit@1": 0.1, "latency_ms.p50": 10.0, "latency_ms.p95": -10.0}


def test_html_escapes_untrusted_text_and_marks_the_quoted_sentence():
    hostile = "<script>alert(1)</script>"
    failure = row(
        id="q2",
        correct=False,
        first_correct=False,
        question=f"问题{hostile}",
        answer="回答<img src=x onerror=alert(1)>[1]",
        citations=[
            {
                "n": 1,
                "doc_id": "a.md",
                "chunk_id": "a.md#0",
                "title": hostile,
                "date": "",
                "source": "",
                "text": f"前文。{hostile}被引用的句子。后文。",
                "quotes": [f"{hostile}被引用的句子。"],
            }
        ],
    )
    page = render_html(
        {"n": 2, "hit@1": 0.5, "latency_ms": {"p50": 1, "p95": 2}}, [row(), failure], "测试"
    )
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<mark>&lt;script&gt;alert(1)&lt;/script&gt;被引用的句子。</mark>" in page
    assert page.count('class="failure"') == 1 and "<svg" in page
    assert '<meta charset="utf-8">' in page


def baseline_file(tmp_path, **report):
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps({"n": 3, "set": "/ci/checkout/evals/project.jsonl", **report}))
    return path


def test_a_baseline_is_compared_by_question_id():
    before = {
        "n": 4,
        "questions": [
            {"id": "q1", "correct": True},
            {"id": "q2", "correct": False},
            {"id": "q3", "correct": True},
            {"id": "gone", "correct": True},  # dropped from the set since: not a regression
        ],
    }
    now = [row(id="q1", correct=False), row(id="q2"), row(id="q3"), row(id="new", correct=False)]
    assert flips(now, before) == {"regressed": ["q1"], "fixed": ["q2"]}
    assert flips(now, {"n": 4}) is None  # an older report: metrics only


def test_more_regressions_than_allowed_fail_the_gate():
    flipped = {"regressed": ["q1", "q7"], "fixed": []}
    assert regression_gate(flipped, 2).failure is None
    failure = regression_gate(flipped, 1).failure
    assert (
        failure == "2 question(s) went from right to wrong since the baseline (allowed: 1): q1, q7"
    )


def test_a_baseline_from_another_checkout_of_the_same_set_is_accepted(tmp_path):
    path = baseline_file(tmp_path, questions=[{"id": "q1", "correct": True}])
    loaded = load_baseline(path, tmp_path / "evals" / "project.jsonl", ["q1", "q2"])
    assert loaded["questions"] == [{"id": "q1", "correct": True}]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such baseline file"),
        ("{oops", "not a JSON report"),
        ("[1, 2]", "no metrics object"),
        (
            '{"n": 3, "set": "evals/other.jsonl"}',
            "baseline of another set (other.jsonl, not project.jsonl)",
        ),
        ('{"n": 3, "questions": [{"id": "x1", "correct": true}]}', "none of its 1 question ids"),
        ('{"n": 3, "questions": [{"id": "q1", "correct": "yes"}]}', '"questions" must be a list'),
    ],
)
def test_a_baseline_we_cannot_compare_with_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "baseline.json"
    if content is not None:
        path.write_text(content, "utf-8")
    with pytest.raises(BaselineError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_baseline(path, tmp_path / "project.jsonl", ["q1"])


def test_what_flipped_comes_first_in_the_page():
    report = {
        "n": 2,
        "latency_ms": {"p50": 1, "p95": 2},
        "flipped": {"regressed": ["q9"], "fixed": ["q1"]},
    }
    rows = [
        row(id="q1", question="修好的<问题>"),
        row(id="q9", question="变错的问题", correct=False),
    ]
    page = render_html(report, rows, "测试")
    assert page.index("由对变错（1）") < page.index("由错变对（1）") < page.index("<h2>指标</h2>")
    assert '<a href="#q-q9">q9</a> · 变错的问题' in page and 'id="q-q9"' in page
    assert "q1 · 修好的&lt;问题&gt;" in page
    older = render_html({**report, "flipped": None}, rows, "x")
    assert "基线报告不含逐题结果" in older
    assert "与基线相比" not in render_html({"n": 2}, rows, "x")
