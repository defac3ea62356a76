"""`rag eval`: metrics, reports, cached set corpora, thresholds that gate CI."""

import json
from pathlib import Path

from typer.testing import CliRunner

from rag.cli import app
from rag.retrieve import HybridRetriever
from tests.conftest import run_rag
from tests.junit_schema import check_junit

REPO = Path(__file__).resolve().parents[1]
DOCS = [
    ("d1", "明川区楼宇经济办法：新入驻企业首年租金补贴50%，第二年30%。"),
    ("d2", "明川区飞地经济政策：飞地项目投产后前3年按区级财政贡献的60%给予奖励。"),
    ("d3", "明川区外资奖励办法：新设外资企业到资500万美元以上的，按到资额2%奖励。"),
    ("d4", "莱芜区上半年实际使用外资3227万美元，同比增长88.6%。"),
    ("d5", "明川区人才办法：顶尖人才给予安家补贴300万元，分5年发放。"),
]
QUESTIONS = [
    {"id": "a", "question": "写字楼第一年房租补贴多少？", "answers": ["50%"], "gold_docs": ["d1"]},
    {"id": "b", "question": "飞地项目头三年奖励比例？", "answers": ["60%"], "gold_docs": ["d2"]},
    {
        "id": "c",
        "question": "莱芜区上半年用了多少外资？",
        "answers": ["3227万美元"],
        "gold_docs": ["d4"],
    },
    {
        "id": "d",
        "question": "红烧肉怎么做？",
        "answers": [],
        "gold_docs": [],
        "expect_refusal": True,
    },
]


def small_set(folder: Path) -> Path:
    folder.mkdir()
    (folder / "docs.jsonl").write_text(
        "".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n" for i, t in DOCS),
        "utf-8",
    )
    (folder / "questions.jsonl").write_text(
        "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in QUESTIONS), "utf-8"
    )
    return folder


def test_folder_set_is_indexed_once_and_reports_are_written(tmp_path, e5_dir):
    env = {"RAG_EMBEDDING_MODEL": str(e5_dir)}
    folder = small_set(tmp_path / "mini")
    out = tmp_path / "report"
    first = run_rag("eval", str(folder), "--json", "--out", str(out), env=env)
    assert first.returncode == 0, first.stderr
    metrics = json.loads(first.stdout)
    assert {
        "n",
        "hit@1",
        "hit@5",
        "mrr@10",
        "answer_acc",
        "answer_first_acc",
        "citation_precision",
        "refusal_acc",
        "latency_ms",
    } <= set(metrics)
    assert metrics["n"] == 4 and metrics["hit@5"] == 1.0
    assert set(metrics["latency_ms"]) == {"p50", "p95"}
    assert "5 embedded, 0 cached" in first.stderr
    rows = [json.loads(line) for line in (out / "questions.jsonl").read_text("utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["a", "b", "c", "d"]
    assert json.loads((out / "report.json").read_text("utf-8")) == metrics
    assert metrics["questions"][0] == {
        "id": "a",
        "correct": True,
        "refused": False,
        "failure": None,
    }
    assert "评测报告" in (out / "report.html").read_text("utf-8")

    second = run_rag("eval", str(folder), "--json", "--baseline", str(out / "report.json"), env=env)
    assert second.returncode == 0
    assert "0 embedded, 5 cached" in second.stderr
    assert "Δ hit@1" in second.stderr


def test_a_metric_under_its_threshold_exits_1_with_a_plain_list(tmp_path, e5_dir):
    env = {"RAG_EMBEDDING_MODEL": str(e5_dir)}
    folder = small_set(tmp_path / "mini")
    flagged = run_rag("eval", str(folder), "--min-hit@5", "1.01", env=env)
    assert flagged.returncode == 1
    assert "below threshold:\n  hit@5: 1.0000 < 1.01" in flagged.stderr
    (folder / "eval.toml").write_text('[min]\nanswer_acc = 1.01\n"hit@1" = 0.1\n', "utf-8")
    from_file = run_rag("eval", str(folder), env=env)
    assert from_file.returncode == 1
    assert (
        "answer_acc:" in from_file.stderr
        and "hit@1" not in from_file.stderr.split("below threshold")[1]
    )


def test_bad_sets_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "question": "外资？"}\n{oops\n', "utf-8")
    result = run_rag("eval", str(bad))
    assert (
        result.returncode == 2
        and "bad.jsonl:1" in result.stderr
        and "Traceback" not in result.stderr
    )
    missing = run_rag("eval", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_a_broken_retriever_fails_the_project_sets_thresholds(corpus_index, e5_dir, monkeypatch):
    """The CI gate is `make eval-gate` (part of `make test`): evals/project.jsonl over corpus/
    with evals/project.toml's thresholds, which the healthy product passes. Here a broken
    retriever is injected into the same command: it must exit 1."""
    monkeypatch.setenv("RAG_DATA_DIR", str(corpus_index.data_dir))
    monkeypatch.setenv("RAG_COLLECTION", "corpus")
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", str(e5_dir))
    runner = CliRunner()
    real_search = HybridRetriever.search

    def broken(self, question, k=None, filters=None, query_vector=None, timings=None, **kw):
        """Returns the least relevant of 30 candidates first."""
        hits = real_search(self, question, 30, filters, query_vector, timings, **kw)
        return list(reversed(hits))[: k or self.k]

    monkeypatch.setattr(HybridRetriever, "search", broken)
    regressed = runner.invoke(app, ["eval", str(REPO / "evals" / "project.jsonl")])
    assert regressed.exit_code == 1
    assert "below threshold" in regressed.output


def test_a_broken_answerer_fails_exactly_the_answerable_questions_and_they_are_named(
    tmp_path, e5_dir
):
    """A refusal threshold no evidence reaches makes the real chain refuse everything:
    the three answerable questions fail, the one that must be refused passes. Compared
    with a healthy run, exactly those three regressed; the other way round, they are fixed."""
    env = {"RAG_EMBEDDING_MODEL": str(e5_dir)}
    broken = {**env, "RAG_REFUSAL_THRESHOLD": "100", "RAG_READER_REFUSAL_THRESHOLD": "1"}
    folder = small_set(tmp_path / "mini")
    healthy = run_rag("eval", str(folder), "--json", "--junit", "healthy.xml", env=env)
    assert healthy.returncode == 0, healthy.stderr
    assert [q["correct"] for q in json.loads(healthy.stdout)["questions"]] == [True] * 4
    assert check_junit(tmp_path / "healthy.xml")["mini"] == dict.fromkeys(
        [f"{q['id']} {q['question']}" for q in QUESTIONS]
    )
    (tmp_path / "baseline.json").write_text(healthy.stdout, "utf-8")

    worse = run_rag(
        "eval",
        str(folder),
        "--baseline",
        "baseline.json",
        "--junit",
        "ci/junit.xml",
        "--out",
        "report",
        "--min-answer_acc",
        "0.5",
        env=broken,
    )
    assert worse.returncode == 1
    assert "regressed (right → wrong): 3  a b c\nfixed (wrong → right): 0" in worse.stdout
    assert "below threshold:\n  answer_acc: 0.0000 < 0.5" in worse.stderr
    assert (
        "regression: 3 question(s) went from right to wrong since the baseline (allowed: 0): "
        "a, b, c" in worse.stderr
    )
    outcomes = check_junit(tmp_path / "ci" / "junit.xml")
    assert outcomes["mini"] == {
        "a 写字楼第一年房租补贴多少？": "wrongly_refused",
        "b 飞地项目头三年奖励比例？": "wrongly_refused",
        "c 莱芜区上半年用了多少外资？": "wrongly_refused",
        "d 红烧肉怎么做？": None,
    }
    assert outcomes["mini.gates"] == {
        "answer_acc >= 0.5": "gate",
        "at most 0 regression(s) against the baseline": "gate",
    }
    report = json.loads((tmp_path / "report" / "report.json").read_text("utf-8"))
    assert report["flipped"] == {"regressed": ["a", "b", "c"], "fixed": []}
    page = (tmp_path / "report" / "report.html").read_text("utf-8")
    assert page.index("由对变错（3）") < page.index("<h2>指标</h2>")

    allowed = run_rag(
        "eval",
        str(folder),
        "--json",
        "--baseline",
        "baseline.json",
        "--allow-regressions",
        "3",
        env=broken,
    )
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["flipped"]["regressed"] == ["a", "b", "c"]
    assert "regressed (right → wrong): 3  a b c" in allowed.stderr  # stdout is the JSON

    repaired = run_rag("eval", str(folder), "--baseline", "report/report.json", env=env)
    assert repaired.returncode == 0, repaired.stderr
    assert "regressed (right → wrong): 0\nfixed (wrong → right): 3  a b c" in repaired.stdout


def test_a_baseline_that_cannot_be_compared_is_a_clear_error(tmp_path):
    folder = small_set(tmp_path / "mini")
    missing = run_rag("eval", str(folder), "--baseline", "nope.json")
    assert missing.returncode == 2 and "no such baseline file: nope.json" in missing.stderr
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"n": 2, "set": "evals/project.jsonl", "questions": []}))
    wrong_set = run_rag("eval", str(folder), "--baseline", str(other))
    assert wrong_set.returncode == 2
    assert "is a baseline of another set (project.jsonl, not mini)" in wrong_set.stderr
    folder_for_junit = run_rag("eval", str(folder), "--junit", str(tmp_path))
    assert folder_for_junit.returncode == 2 and "is a folder" in folder_for_junit.stderr
    assert "Traceback" not in missing.stderr + wrong_set.stderr + folder_for_junit.stderr


def test_a_bad_set_line_exits_2_naming_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"id": "a", "question": "外资？", "answers": ["2%"]}\n'
        '{"id": "b", "question": "天气？", "answers": [], "expect_refusal": "yes"}\n',
        "utf-8",
    )
    result = run_rag("eval", str(bad), "--junit", "junit.xml")
    assert result.returncode == 2
    assert f'{bad}:2: "expect_refusal" must be true or false' in result.stderr
    assert not (tmp_path / "junit.xml").exists()
