"""Word 97–2003 `.doc` (and WPS `.wps`) through LibreOffice headless: the test makes a
.doc by having LibreOffice save a .docx the way Word 2003 would, then reads it back."""

import io
import subprocess
import zipfile
from pathlib import Path

import pytest

from rag import office
from rag.load import UnreadableError, load_file
from tests.test_tables import award_docx


def make_doc(tmp_path: Path) -> bytes:
    assert office.soffice(), "LibreOffice is missing: apt-get install libreoffice-writer-nogui"
    (tmp_path / "award.docx").write_bytes(award_docx())
    subprocess.run(
        [
            office.soffice(),
            f"-env:UserInstallation={(tmp_path / 'profile').as_uri()}",
            "--headless",
            "--convert-to",
            "doc:MS Word 97",
            "--outdir",
            str(tmp_path),
            str(tmp_path / "award.docx"),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return (tmp_path / "award.doc").read_bytes()


@pytest.mark.parametrize("suffix", [".doc", ".wps"])
def test_a_doc_is_read_with_its_table_rows_and_their_header(tmp_path, suffix):
    """WPS 文字 saves a `.wps` as the same Word 97 binary in an OLE container, under its own
    name; LibreOffice must read it by its content, not take it for a Microsoft Works file."""
    data = make_doc(tmp_path)
    assert (
        data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
    )  # an OLE compound file, as Word 97 writes
    doc = load_file(Path(f"办法{suffix}"), f"办法{suffix}", data)
    assert "第三条 总部企业落户奖励按下表执行：" in doc.text
    assert "企业类型：研发中心，奖励标准·金额：100万元，奖励标准·兑现方式：一次性兑现。" in doc.text


def test_without_libreoffice_a_doc_is_refused_saying_what_to_install(monkeypatch):
    monkeypatch.setattr(office.shutil, "which", lambda name: None)
    with pytest.raises(UnreadableError, match="apt-get install libreoffice-writer-nogui"):
        load_file(Path("a.wps"), "a.wps", office.OLE + b" something")


def test_a_file_that_is_no_doc_is_refused_before_libreoffice_sees_it():
    """LibreOffice would take any bytes for text and "read" them."""
    with pytest.raises(UnreadableError, match="no OLE header"):
        load_file(Path("a.doc"), "a.doc", b"not a word file at all")


def test_a_damaged_doc_says_libreoffice_could_not_read_it(tmp_path):
    broken = make_doc(tmp_path)[:1536]  # the header and no more
    with pytest.raises(UnreadableError, match="LibreOffice could not read it"):
        load_file(Path("a.doc"), "a.doc", broken)


def zip_of(parts: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in parts.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("suffix", "part"),
    [
        (".docx", "word/document.xml"),
        (".xlsx", "xl/worksheets/sheet1.xml"),
        (".ofd", "Doc_0/Pages/Page_0/Content.xml"),
    ],
)
def test_a_zip_part_unpacking_past_the_limit_is_refused_by_name(monkeypatch, suffix, part):
    """As a 5 MB .docx whose document.xml unpacks to 900 MB (4.6 GB once parsed)."""
    monkeypatch.setattr(office, "MAX_UNPACKED_BYTES", 4096)
    data = zip_of({"[Content_Types].xml": b"<Types/>", part: b"<a>" + b"a" * 4994 + b"</a>"})
    assert len(data) < 1000
    with pytest.raises(UnreadableError) as refused:
        load_file(Path(f"a{suffix}"), f"a{suffix}", data)
    assert str(refused.value) == f"{part} is 5001 bytes unpacked (limit 4096 bytes)"


def test_a_docx_is_read_up_to_the_limit_and_refused_past_it_counting_all_parts(monkeypatch):
    data = award_docx()
    stated = sum(info.file_size for info in zipfile.ZipFile(io.BytesIO(data)).infolist())
    monkeypatch.setattr(office, "MAX_UNPACKED_BYTES", stated)
    assert "第三条 总部企业落户奖励按下表执行：" in load_file(Path("a.docx"), "a.docx", data).text
    monkeypatch.setattr(office, "MAX_UNPACKED_BYTES", stated - 1)
    with pytest.raises(UnreadableError) as refused:
        load_file(Path("a.docx"), "a.docx", data)
    assert str(refused.value) == f"its parts unpack to {stated} bytes (limit {stated - 1} bytes)"
