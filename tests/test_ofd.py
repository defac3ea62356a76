"""OFD (GB/T 33190) files made by a test helper, read as ingest reads them."""

import io
import zipfile
from pathlib import Path

import pytest

from rag.load import NoTextError, UnreadableError, load_file

PAGE_1 = [
    "明川区促进先进制造业发展的若干措施",
    "第一条 对新建的先进制造业项目，设备投资额超过5000万元的，按设备投资额的8%给予补助，最高1000万元。",
]
PAGE_2 = ["第二条 对首次入选国家级专精特新“小巨人”的企业，一次性奖励80万元。"]
SIZE, PER_LINE = 4.2, 38  # mm a character, characters a line on A4 with 20 mm margins


def text_objects(paragraphs: list[str]) -> str:
    """Each paragraph's lines as TextObjects, wrapped as a layout program places them,
    written in reverse order: reading order must come from the positions."""
    objects, y, n = [], 25.0, 0
    for paragraph in paragraphs:
        for start in range(0, len(paragraph), PER_LINE):
            line = paragraph[start : start + PER_LINE]
            n += 1
            objects.append(
                f'<ofd:TextObject ID="{n}" Boundary="20 {y} {SIZE * len(line):.1f} {SIZE * 1.4}"'
                f' Font="1" Size="{SIZE}"><ofd:TextCode X="0" Y="{SIZE}">{line}</ofd:TextCode>'
                "</ofd:TextObject>"
            )
            y += SIZE * 1.6
        y += SIZE
    return "".join(reversed(objects))


def make_ofd(pages: list[list[str]], title: str = "先进制造业措施") -> bytes:
    ns = 'xmlns:ofd="http://www.ofdspec.org/2016"'
    files = {
        "OFD.xml": f'<ofd:OFD {ns} Version="1.0" DocType="OFD"><ofd:DocBody><ofd:DocInfo>'
        f"<ofd:Title>{title}</ofd:Title><ofd:Author>明川区人民政府</ofd:Author></ofd:DocInfo>"
        "<ofd:DocRoot>Doc_0/Document.xml</ofd:DocRoot></ofd:DocBody></ofd:OFD>",
        "Doc_0/Document.xml": f"<ofd:Document {ns}><ofd:Pages>"
        + "".join(
            f'<ofd:Page ID="{n}" BaseLoc="Pages/Page_{n}/Content.xml"/>' for n in range(len(pages))
        )
        + "</ofd:Pages></ofd:Document>",
    }
    for n, paragraphs in enumerate(pages):
        files[f"Doc_0/Pages/Page_{n}/Content.xml"] = (
            f'<ofd:Page {ns}><ofd:Content><ofd:Layer ID="0">{text_objects(paragraphs)}'
            "</ofd:Layer></ofd:Content></ofd:Page>"
        )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return out.getvalue()


def test_an_ofd_is_read_in_reading_order_page_by_page():
    doc = load_file(Path("措施.ofd"), "措施.ofd", make_ofd([PAGE_1, PAGE_2]))
    assert doc.meta["title"] == "先进制造业措施" and doc.meta["author"] == "明川区人民政府"
    assert doc.text.splitlines() == [*PAGE_1, *PAGE_2]  # wrapped lines joined again
    assert doc.page_at(doc.text.index("小巨人")) == 2 and doc.page_at(0) == 1


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"PK\x03\x04 not a zip", UnreadableError, "not a readable .ofd (not a zip"),
        (None, UnreadableError, "Doc_0/Document.xml is missing"),
        (make_ofd([[]]), NoTextError, ".ofd has no text"),
    ],
)
def test_a_broken_or_empty_ofd_says_why(data, error, message):
    if data is None:  # the document the package points at is gone
        out = io.BytesIO()
        with (
            zipfile.ZipFile(out, "w") as archive,
            zipfile.ZipFile(io.BytesIO(make_ofd([PAGE_1]))) as src,
        ):
            archive.writestr("OFD.xml", src.read("OFD.xml"))
        data = out.getvalue()
    with pytest.raises(error, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_file(Path("a.ofd"), "a.ofd", data)
