"""OCR of scans the tests make (tests/scans.py): text read back in reading order, pages
found, a question about page 2 cited with page 2, unreadable pages reported."""

import unicodedata
from difflib import SequenceMatcher

import pytest

from rag.layout import Box, reading_text
from rag.load import load_file
from tests.scans import png, scanned_pdf

PAGE_1 = [
    "明川区促进数字经济发展的若干措施",
    "第一条 为加快数字经济发展，培育新的增长点，结合本区实际，制定本措施。",
    "第二条 本措施适用于在本区注册并纳税的数字经济企业，包括软件、数据服务和智能制造企业。",
]
PAGE_2 = [
    "第三条 对新认定的数字经济龙头企业，一次性给予300万元奖励。",
    "第四条 企业租用本区数字产业园办公用房的，前两年按实际租金的40%给予补贴。",
    "第五条 本措施自2025年3月1日起施行，有效期三年。",
]


def character_accuracy(expected: str, read: str) -> float:
    """1 - edit distance share over the characters, blanks and width forms aside."""

    def norm(text: str) -> str:
        return "".join(unicodedata.normalize("NFKC", text).split())

    a, b = norm(expected), norm(read)
    matcher = SequenceMatcher(None, a, b, autojunk=False)
    same = sum(block.size for block in matcher.get_matching_blocks())
    return same / max(len(a), len(b))


def test_boxes_are_read_in_lines_and_wrapped_lines_join_their_paragraph():
    boxes = [
        Box("第二行右", 300, 52, 500, 72),
        Box("第一行左", 10, 10, 290, 30),  # reaches the margin: the paragraph goes on
        Box("第一行右", 300, 11, 500, 31),
        Box("第二行左", 10, 50, 290, 70),
        Box("短行。", 10, 90, 100, 110),  # ends short of the margin: its paragraph ends
        Box("新段落", 10, 130, 120, 150),
    ]
    assert reading_text(boxes) == "第一行左第一行右第二行左第二行右短行。\n新段落"
    assert reading_text([]) == ""


@pytest.fixture(scope="module")
def scan() -> bytes:
    return scanned_pdf([PAGE_1, PAGE_2])


def test_a_scanned_pdf_is_read_by_ocr_page_by_page(scan):
    doc = load_file(__import__("pathlib").Path("措施.pdf"), "措施.pdf", scan)
    assert doc.meta["ocr"] == "true" and doc.notes == ()
    assert len(doc.page_starts) == 2
    second = doc.text[doc.page_starts[1] :]
    assert second.startswith("第三条") and "300万元" in second
    assert doc.page_at(doc.text.index("300万元")) == 2 and doc.page_at(0) == 1
    accuracy = character_accuracy("".join(PAGE_1 + PAGE_2), doc.text)
    assert accuracy >= 0.97, accuracy


def test_a_question_about_page_2_cites_page_2(scan, tmp_path, embeddings):
    from rag.chain import build_assistant
    from rag.config import Settings
    from rag.index import Index
    from rag.ingest import ingest

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "数字经济措施.pdf").write_bytes(scan)
    index = Index(tmp_path / "data", "scans", embeddings)
    report = ingest([tmp_path / "docs"], index, 300, 60)
    assert report.added == 1 and report.failures == []
    answer = build_assistant(Settings(), index).ask("新认定的数字经济龙头企业奖励多少？").to_json()
    assert "300万元" in answer["answer"]
    first = answer["citations"][0]
    assert first["page"] == 2 and "300万元" in first["text"]


def test_a_page_ocr_cannot_read_is_reported_and_the_rest_indexed(tmp_path):
    scan = scanned_pdf([PAGE_1, [], PAGE_2])  # a blank page between
    doc = load_file(tmp_path / "a.pdf", "a.pdf", scan)
    assert doc.notes == ("page 2: no text, and OCR could read none",)
    assert "300万元" in doc.text and doc.page_at(doc.text.index("300万元")) == 3
    assert doc.page_at(0) == 1 and doc.page_at(doc.text.index("第二条")) == 1


def test_an_image_is_read_by_ocr(tmp_path):
    doc = load_file(tmp_path / "通知.png", "通知.png", png(PAGE_2))
    assert doc.meta["ocr"] == "true" and "300万元" in doc.text
    assert doc.page_at(0) == 1
