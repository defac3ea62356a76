"""OFD (GB/T 33190, the national format for electronic documents that government portals
publish more and more): a zip of XML. Its text is in each page's Content.xml as
TextObjects (a Boundary "x y w h" on the page, in mm) holding TextCodes (positions
inside the object, and the characters); pages are listed in the document's Document.xml,
found from OFD.xml. Read with the standard library; placed text goes back into reading
order through rag.layout.
"""

from __future__ import annotations

import io
import posixpath
import zipfile
from xml.etree import ElementTree

from rag.layout import Box, reading_text

NS = {"ofd": "http://www.ofdspec.org/2016"}


class OfdError(ValueError):
    """Not an OFD we can read; the message says why."""


def _xml(archive: zipfile.ZipFile, name: str) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(archive.read(name))
    except KeyError:
        raise OfdError(f"{name} is missing") from None
    except ElementTree.ParseError as err:
        raise OfdError(f"{name} is not well-formed XML ({err})") from None


def _resolve(base: str, location: str) -> str:
    """A location inside the package: absolute ("/Doc_0/…") or relative to `base`'s folder."""
    location = location.strip()
    if location.startswith("/"):
        return location.lstrip("/")
    return posixpath.normpath(posixpath.join(posixpath.dirname(base), location))


def _numbers(text: str | None) -> list[float]:
    try:
        return [float(v) for v in (text or "").split()]
    except ValueError:
        return []


def page_boxes(content: ElementTree.Element) -> list[Box]:
    """The text of one page's Content.xml as boxes in page coordinates."""
    boxes = []
    for obj in content.iter(f"{{{NS['ofd']}}}TextObject"):
        x, y, w, h = ([*_numbers(obj.get("Boundary")), 0, 0, 0, 0])[:4]
        size = float(obj.get("Size") or h or 1)
        for code in obj.findall("ofd:TextCode", NS):
            text = "".join(code.itertext())
            if not text.strip():
                continue
            left = x + float(code.get("X") or 0)
            baseline = y + float(code.get("Y") or size)
            boxes.append(
                Box(text, left, baseline - size, left + max(w, size * len(text)), baseline)
            )
    return boxes


def ofd_pages(data: bytes) -> tuple[list[str], dict[str, str]]:
    """Each page's text in reading order, and the document's title and author."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as err:
        raise OfdError(f"not a zip ({err})") from None
    with archive:
        root = _xml(archive, "OFD.xml")
        body = root.find("ofd:DocBody", NS)
        doc_root = body.findtext("ofd:DocRoot", "", NS) if body is not None else ""
        if not doc_root:
            raise OfdError("OFD.xml names no DocRoot")
        document_path = _resolve("OFD.xml", doc_root)
        document = _xml(archive, document_path)
        pages = []
        for page in document.iterfind("ofd:Pages/ofd:Page", NS):
            location = _resolve(document_path, page.get("BaseLoc", ""))
            pages.append(reading_text(page_boxes(_xml(archive, location))))
        info = body.find("ofd:DocInfo", NS)
        meta = {
            "title": (info.findtext("ofd:Title", "", NS) if info is not None else "").strip(),
            "author": (info.findtext("ofd:Author", "", NS) if info is not None else "").strip(),
        }
    if not pages:
        raise OfdError("Document.xml lists no pages")
    return pages, meta
