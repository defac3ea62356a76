"""An evaluation run as JUnit XML, the test report CI systems show (GitLab, Jenkins, …).

One suite holds a test case per question, failed when the question was answered wrongly,
refused wrongly, not refused, or answered out of scope without the caveat; the run's
metrics are its properties. A second suite holds the gates that decide the exit status
(thresholds, regressions against a baseline), one case each. The layout follows the
common JUnit schema (Jenkins xunit's junit-10.xsd): properties before test cases,
`tests` and `failures` counts that match the cases.

Answers and questions carry document text, which is untrusted: ElementTree escapes
markup, and characters XML 1.0 cannot hold at all (control characters) are replaced.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from rag.evaluate import Row
from rag.report import Gate

# XML 1.0 forbids most C0 controls, lone surrogates and U+FFFE/U+FFFF even as references.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

_WHY = {
    "wrong_answer": "wrong answer",
    "wrongly_refused": "refused an answerable question",
    "missed_refusal": "answered a question that must be refused",
    "missed_scope_caveat": "answered out of scope without the caveat",
}


def _text(value: object) -> str:
    return _NOT_XML.sub("\ufffd", str(value))


def _expected(row: Row) -> str:
    if row.out_of_scope:
        return "a refusal, or an answer with an out-of-scope caveat"
    if row.expect_refusal:
        return "a refusal"
    return " + ".join(
        " | ".join(map(str, item)) if isinstance(item, list) else str(item) for item in row.expected
    )


def _cited(row: Row) -> list[str]:
    return [f"[{c['n']}] {c['doc_id']}" for c in row.citations]


def _failure(row: Row, regressed: bool) -> ET.Element:
    why = _WHY[row.failure]
    if regressed:
        why += " (regressed: right in the baseline)"
    answer = " ".join(row.answer.split())  # one line in the message; the body keeps it whole
    message = (
        f"{why}; expected: {_expected(row)}; answer: {answer}; "
        f"cited: {', '.join(_cited(row)) or 'nothing'}"
    )
    body = [
        f"{why}",
        f"question: {row.question}",
        f"expected: {_expected(row)}",
        f"gold documents: {', '.join(row.gold_docs) or '-'}",
        f"first gold document's rank: {row.gold_rank or 'not retrieved'}",
        f"answer{' (refused)' if row.refused else ''}:",
        row.answer,
        "cited:" if row.citations else "cited: nothing",
        *(
            f"  [{c['n']}] {c['doc_id']} {c.get('title') or ''} ({c['chunk_id']})"
            for c in row.citations
        ),
    ]
    element = ET.Element("failure", message=_text(message), type=row.failure)
    element.text = _text("\n".join(body))
    return element


def _suite(name: str, cases: list[ET.Element], timestamp: str) -> ET.Element:
    return ET.Element(
        "testsuite",
        name=name,
        tests=str(len(cases)),
        failures=str(sum(c.find("failure") is not None for c in cases)),
        errors="0",
        skipped="0",
        time=f"{sum(float(c.get('time', 0)) for c in cases):.3f}",
        timestamp=timestamp,
    )


def _properties(report: dict) -> ET.Element:
    """The run's numbers, flattened (`latency_ms.p50`, `flipped.regressed` as a list of
    ids); a metric the set cannot measure is "null", as in the JSON."""
    properties = ET.Element("properties")

    def add(name: str, value: object) -> None:
        if value is None:
            value = "null"
        elif isinstance(value, list):
            value = ",".join(map(str, value))
        ET.SubElement(properties, "property", name=name, value=_text(value))

    for name, value in report.items():
        if name == "questions":  # they are the test cases
            continue
        if isinstance(value, dict):
            for sub, inner in value.items():
                add(f"{name}.{sub}", inner)
        else:
            add(name, value)
    return properties


def junit_xml(
    set_name: str,
    report: dict,
    rows: Sequence[Row],
    gates: Sequence[Gate],
    now: dt.datetime | None = None,
) -> ET.ElementTree:
    """The run as a JUnit tree: suite `set_name` (one case per question, the metrics as
    properties) and suite `set_name.gates` (one case per threshold or regression gate)."""
    timestamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%S")
    regressed = set((report.get("flipped") or {}).get("regressed", []))

    question_cases = []
    for row in rows:
        case = ET.Element(
            "testcase",
            name=_text(f"{row.id} {row.question}"),
            classname=_text(set_name),
            time=f"{row.latency_ms / 1000:.3f}",
        )
        if row.failure:
            case.append(_failure(row, row.id in regressed))
        question_cases.append(case)
    questions = _suite(set_name, question_cases, timestamp)
    questions.append(_properties(report))
    questions.extend(question_cases)

    gate_cases = []
    for gate in gates:
        case = ET.Element(
            "testcase", name=_text(gate.name), classname=_text(f"{set_name}.gates"), time="0.000"
        )
        if gate.failure:
            ET.SubElement(case, "failure", message=_text(gate.failure), type="gate")
        gate_cases.append(case)
    gates_suite = _suite(f"{set_name}.gates", gate_cases, timestamp)
    gates_suite.extend(gate_cases)

    suites = [questions, gates_suite]
    root = ET.Element(
        "testsuites",
        name="rag eval",
        tests=str(sum(int(s.get("tests")) for s in suites)),
        failures=str(sum(int(s.get("failures")) for s in suites)),
        errors="0",
        time=questions.get("time"),
    )
    root.extend(suites)
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(path: Path, tree: ET.ElementTree) -> None:
    """Write atomically: a CI step that reads the file never sees half of it, and a
    failed write leaves the previous file in place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # readable as the other report files are (mkstemp makes 0600)
        with os.fdopen(fd, "wb") as fh:
            tree.write(fh, encoding="utf-8", xml_declaration=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
