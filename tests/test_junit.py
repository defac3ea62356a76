"""JUnit XML of an eval run: schema-valid, one case per question and per gate, failures
that say what was expected, what was answered and what was cited; untrusted text safe."""

import xml.etree.ElementTree as ET

import pytest
from junitparser import JUnitXml

from rag.junit import junit_xml, write_junit
from rag.report import Gate
from tests.junit_schema import check_junit
from tests.test_report import row

HOSTILE = "</failure><script>alert(1)</script>]]>\x00\x1b&amp;"


def citation(n: int, doc_id: str, text: str) -> dict:
    return {"n": n, "doc_id": doc_id, "chunk_id": f"{doc_id}#0", "title": "标题", "text": text}


def rows():
    return [
        row(id="p1"),
        row(
            id="p2",
            question="写字楼租金补贴多少？",
            expected=["50%", ["三年", "3年"]],
            answer=f"补贴30%。{HOSTILE}[1]",
            correct=False,
            gold_docs=["building.md"],
            gold_rank=2,
            citations=[citation(1, "other.md", HOSTILE)],
        ),
        row(id="p3", answer="知识库中没有找到…", refused=True, correct=False, citations=[]),
        row(
            id="r1",
            question="天气怎么样？",
            expected=[],
            expect_refusal=True,
            answer="晴。[1]",
            correct=False,
            citations=[citation(1, "news.txt", "晴")],
        ),
        row(id="s1", expected=[], out_of_scope=True, answer="按2%。[1]", correct=False),
        row(id="r2", expected=[], expect_refusal=True, refused=True, correct=True),
    ]


def test_every_question_is_a_case_and_each_failure_says_why(tmp_path):
    report = {
        "n": 6,
        "answer_acc": 0.333,
        "citation_precision": None,
        "latency_ms": {"p50": 42.0, "p95": 42.0},
        "set": "evals/project.jsonl",
        "questions": [],
        "flipped": {"regressed": ["p2"], "fixed": []},
    }
    gates = [Gate("answer_acc >= 0.9", "answer_acc: 0.3330 < 0.9"), Gate("hit@5 >= 0.5")]
    path = tmp_path / "out" / "junit.xml"
    write_junit(path, junit_xml("project", report, rows(), gates))

    outcomes = check_junit(path)
    assert outcomes["project"] == {
        "p1 外资奖励多少？": None,
        "p2 写字楼租金补贴多少？": "wrong_answer",
        "p3 外资奖励多少？": "wrongly_refused",
        "r1 天气怎么样？": "missed_refusal",
        "s1 外资奖励多少？": "missed_scope_caveat",
        "r2 外资奖励多少？": None,
    }
    assert outcomes["project.gates"] == {"answer_acc >= 0.9": "gate", "hit@5 >= 0.5": None}

    suite = next(s for s in JUnitXml.fromfile(str(path)) if s.name == "project")
    properties = {p.name: p.value for p in suite.properties()}
    assert properties["answer_acc"] == "0.333" and properties["citation_precision"] == "null"
    assert properties["latency_ms.p50"] == "42.0" and properties["flipped.regressed"] == "p2"
    assert "questions" not in properties  # they are the cases
    cases = {c.name.split()[0]: c for c in suite}
    assert {c.classname for c in suite} == {"project"}
    wrong = cases["p2"].result[0]
    # The message alone tells a CI reader what was expected, answered and cited.
    assert wrong.message.startswith("wrong answer (regressed: right in the baseline); ")
    assert "expected: 50% + 三年 | 3年" in wrong.message
    assert "cited: [1] other.md" in wrong.message
    assert "first gold document's rank: 2" in wrong.text
    assert "expected: a refusal" in cases["r1"].result[0].message
    assert "cited: [1] news.txt" in cases["r1"].result[0].message


def test_untrusted_text_stays_text_and_characters_xml_cannot_hold_are_replaced(tmp_path):
    path = tmp_path / "junit.xml"
    write_junit(path, junit_xml("s", {"n": 6}, rows(), []))
    check_junit(path)  # a raw NUL or ESC would make the file unreadable
    raw = path.read_text("utf-8")
    assert "<script>" not in raw and "]]>" not in raw.replace("]]&gt;", "")
    failure = ET.parse(path).find(".//testcase[@name='p2 写字楼租金补贴多少？']/failure")
    shown = "</failure><script>alert(1)</script>]]>\ufffd\ufffd&amp;"
    assert shown in failure.get("message") and shown in failure.text


def test_the_file_is_replaced_whole_or_not_at_all(tmp_path):
    path = tmp_path / "junit.xml"
    write_junit(path, junit_xml("s", {"n": 1}, rows()[:1], []))
    before = path.read_bytes()
    unwritable = ET.ElementTree(ET.Element("testsuites", tests=1))  # not text: cannot serialise
    with pytest.raises(TypeError):
        write_junit(path, unwritable)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["junit.xml"]  # no temporary file left
    assert path.stat().st_mode & 0o777 == 0o644
