"""Loading: files and JSONL records → cleaned `Document`s, or a `LoadFailure` saying why not.

One bad file never stops a run: every problem becomes a failure naming the file and the
reason, and the caller goes on with the rest.
"""

from __future__ import annotations

import codecs
import csv
import datetime
import gzip
import hashlib
import io
import json
import logging
import os
import re
import stat
import threading
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath

import yaml

from rag.clean import clean, normalize_whitespace
from rag.figures import iso_date
from rag.ofd import OfdError, ofd_pages
from rag.office import OfficeError, check_unpacked_size, size_text, to_docx
from rag.tables import row_lines
from rag.types import META_FIELDS, Document

TEXT_SUFFIXES = (".txt", ".md")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")  # read by OCR (rag.ocr)
FILE_SUFFIXES = (
    *TEXT_SUFFIXES, ".html", ".htm", ".pdf", ".docx", ".doc", ".wps", ".xlsx", ".csv", ".ofd",
    *IMAGE_SUFFIXES,
)  # fmt: skip
RECORD_SUFFIXES = (".jsonl", ".jsonl.gz")
MAX_FILE_BYTES = 50 * 1024 * 1024
MIN_PAGE_CHARS = 5  # a PDF page with less text than this is taken for a scan (OCR'd)
TABLE_CELL_CHARS, TABLE_MIN_CELLS = 12, 6  # lines that short, that many: maybe a table
# Real front matter is a few hundred bytes. PyYAML builds its objects at pure-Python speed
# and at many times the text's size, so a block of megabytes (a 50 MiB .md may be
# uploaded) would tie up a worker for nothing.
MAX_FRONT_MATTER_BYTES = 32 * 1024
# A JSONL record is one document: as large as a file may be, no larger. A line read with
# no bound would be held whole, however long (3 GB of "a" from a 3 MB .jsonl.gz).
MAX_RECORD_BYTES = MAX_FILE_BYTES
# What a .jsonl.gz may unpack to, as every record is held while it is indexed. JSON text
# gzips 3-10x, so real records in the largest upload (50 MiB) unpack to less; a gzip
# bomb (1000x) is stopped here. A larger corpus can be ingested as a plain .jsonl.
MAX_UNPACKED_RECORDS_BYTES = 10 * MAX_FILE_BYTES

log = logging.getLogger("rag.load")
_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.S)


@dataclass(frozen=True)
class LoadFailure:
    path: str
    reason: str


class UnreadableError(ValueError):
    """A file that exists but holds no text we can use; the message says why."""


class NoTextError(UnreadableError):
    """A well-formed file with no text in it (a scanned PDF, a .docx of images): nothing is
    broken, so callers report it apart from failures (job status `no_text`)."""


def supported(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(FILE_SUFFIXES) or name.endswith(RECORD_SUFFIXES)


def iter_files(root: Path) -> Iterator[Path | LoadFailure]:
    """Every file under `root` (or `root` itself), sorted, skipping hidden files and folders.

    Only files inside `root` are read: a symlink whose target lies outside it (a link to
    /etc/passwd, to a key in the home folder) is reported and skipped. Symlinked folders are
    never descended into: one pointing inside is walked at its real path anyway (and could
    loop), one pointing outside is out of bounds.
    """
    if root.is_file():
        yield root
        return
    inside = root.resolve()
    found: list[tuple[Path, Path | LoadFailure]] = []
    for folder, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(folder)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in dirnames:
            path = base / name
            if path.is_symlink() and not _resolves_inside(path, inside):
                found.append((path, _outside(path, root)))
        for name in filenames:
            path = base / name
            if name.startswith("."):
                continue
            if path.is_symlink():
                if not path.exists():  # dangling, or a loop
                    found.append((path, LoadFailure(str(path), "broken symlink; skipped")))
                    continue
                if not _resolves_inside(path, inside):
                    found.append((path, _outside(path, root)))
                    continue
            if path.is_file():  # not a FIFO or device: reading one would hang or never end
                found.append((path, path))
    # Sorted by path parts, as before: the first of two identical documents is the one kept.
    for _, item in sorted(found, key=lambda pair: pair[0]):
        yield item


def _resolves_inside(path: Path, inside: Path) -> bool:
    try:
        return path.resolve().is_relative_to(inside)
    except (OSError, RuntimeError):  # a symlink loop resolves nowhere
        return False


def _outside(path: Path, root: Path) -> LoadFailure:
    return LoadFailure(str(path), f"symlink leads outside {root}; skipped")


@dataclass(frozen=True)
class Source:
    """One document-to-be: known by id and by a hash of its raw bytes, parsed on demand
    (so an unchanged file is never parsed again)."""

    doc_id: str
    location: str  # what to show the user: a path, or path:line for a JSONL record
    raw_hash: str
    _parse: Callable[[], Document]

    def load(self) -> Document:
        return self._parse()


def iter_sources(root: Path) -> Iterator[Source | LoadFailure]:
    """Sources under `root`. `doc_id` is the path relative to `root` (a single file: its
    name); a JSONL record's `doc_id` is its `id` field."""
    if not root.exists():
        yield LoadFailure(str(root), "no such file or folder")
        return
    for path in iter_files(root):
        if isinstance(path, LoadFailure):
            yield path
            continue
        doc_id = path.name if root.is_file() else path.relative_to(root).as_posix()
        if not supported(path):
            yield LoadFailure(str(path), f"unsupported format '{path.suffix or path.name}'")
            continue
        try:
            if path.name.lower().endswith(RECORD_SUFFIXES):  # streamed: any size
                yield from iter_records(path)
                continue
            if path.stat().st_size > MAX_FILE_BYTES:
                raise UnreadableError(f"larger than {MAX_FILE_BYTES // 2**20} MiB")
            data = path.read_bytes()
        except UnreadableError as err:
            yield LoadFailure(str(path), str(err))
            continue
        except OSError as err:
            yield LoadFailure(str(path), f"cannot read ({err.strerror or err})")
            continue
        yield Source(doc_id, str(path), raw_hash(data), partial(parse_file, path, doc_id, data))


def raw_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def parse_file(path: Path, doc_id: str, data: bytes) -> Document:
    try:
        return load_file(path, doc_id, data)
    except UnreadableError:
        raise
    except Exception as err:  # a broken PDF or DOCX raises anything; report it, go on
        raise UnreadableError(f"{type(err).__name__}: {err}") from err


def load_file(path: Path, doc_id: str, data: bytes) -> Document:
    suffix = path.suffix.lower()
    if not data.strip():
        raise UnreadableError("empty file")
    meta: dict[str, str] = {}
    if suffix in TEXT_SUFFIXES:
        raw, meta, notes = read_front_matter(decode_text(data))
        return make_document(doc_id, raw, meta, notes=notes)
    elif suffix in (".html", ".htm"):
        raw, meta = html_text(decode_text(data))
    elif suffix == ".pdf":
        pages, meta, notes = pdf_pages(data)
        return make_document(doc_id, "\n".join(pages), meta, pages, notes)
    elif suffix in (".doc", ".wps"):
        try:
            raw, meta = docx_text(to_docx(data, suffix))
        except OfficeError as err:
            raise UnreadableError(str(err)) from None
    elif suffix == ".ofd":
        _refuse_zip_bomb(data)
        try:
            pages, meta = ofd_pages(data)
        except OfdError as err:
            raise UnreadableError(f"not a readable .ofd ({err})") from None
        if not "".join(pages).strip():
            raise NoTextError(".ofd has no text (only images?)")
        return make_document(doc_id, "\n".join(pages), meta, pages)
    elif suffix in IMAGE_SUFFIXES:
        pages, notes = image_text(data)
        return make_document(doc_id, "\n".join(pages), {"ocr": "true"}, pages, notes)
    elif suffix in (".xlsx", ".csv"):
        raw, meta = xlsx_text(data) if suffix == ".xlsx" else csv_text(data)
        meta = {**meta, "title": meta.get("title") or path.stem}  # not its header row
    else:
        raw, meta = docx_text(data)
    return make_document(doc_id, raw, meta)


def make_document(
    doc_id: str,
    raw: str,
    meta: dict[str, str],
    pages: list[str] | None = None,
    notes: list[str] | None = None,
) -> Document:
    """Clean `raw`; metadata given by the file wins over what the header parser found.
    `pages`: the raw text of each page, whose joining `raw` is, to find where each begins."""
    cleaned = clean(raw)
    if not cleaned.text:
        raise NoTextError("no text after cleaning")
    merged = {**cleaned.meta, **{k: v for k, v in meta.items() if v}}
    if merged.get("date"):
        merged["date"] = iso_date(merged["date"]) or ""
    if not merged.get("title"):
        merged["title"] = title_line(cleaned.text)
    return Document(
        doc_id,
        cleaned.text,
        {k: merged.get(k, "") for k in META_FIELDS},
        page_starts(cleaned.text, pages) if pages else (),
        tuple(notes or ()),
    )


def page_starts(text: str, pages: list[str], probe: int = 12) -> tuple[int, ...]:
    """Where each page begins in the cleaned `text` made of `pages`: the first characters
    of one of the page's first lines, cleaned, looked for after the previous page's
    start (a line cleaning dropped, such as a paragraph repeated from an earlier page,
    is passed over). A page none of whose first lines is found begins where the previous
    one did."""
    starts, cursor = [0], 0
    for page in pages[1:]:
        for line in clean(page).text.splitlines()[:5]:
            head = "".join(line.split())[:probe]
            found = _find_ignoring_space(text, head, cursor) if len(head) >= 4 else -1
            if found >= 0:
                cursor = found
                break
        starts.append(cursor)
    return tuple(starts[: len(pages)])


def _find_ignoring_space(text: str, head: str, start: int) -> int:
    """The offset in `text` (from `start`) where `head` begins, blanks in `text` skipped."""
    pattern = r"\s*".join(re.escape(ch) for ch in head)
    match = re.compile(pattern).search(text, start)
    return match.start() if match else -1


MAX_TITLE_CHARS = 40
MAX_LEAD_TITLE_CHARS = 60  # an official title runs long: 国家卫生健康委办公厅关于…的通知
MIN_LEAD_TITLE_CHARS = 8  # shorter leads are bylines and labels (刘占崑/摄, 内容概述)
_SENTENCE_END = ("。", "！", "？", "；", "…", ".", "!", "?")
_LEAD = re.compile(r"\S+")


def title_line(text: str) -> str:
    """The first line when it reads as a title (short, not a sentence), else "".

    A record flattened to one line (web exports of policies: "关于…的通知 各区商务主管部门：…")
    keeps its title as the first run before a space; Chinese prose has no spaces, so a
    long enough lead that is not a clause (no sentence end, comma or colon at its end) is
    taken as the title.

    A made-up title would mislead: titles are shown as sources and give sentences their
    context when answering, so a passage's first sentence must not pose as one.
    """
    first = text.split("\n", 1)[0].strip()
    if len(first) <= MAX_TITLE_CHARS and not first.endswith(_SENTENCE_END):
        return first
    lead = _LEAD.match(first)
    lead_text = lead[0] if lead else ""
    if MIN_LEAD_TITLE_CHARS <= len(lead_text) <= MAX_LEAD_TITLE_CHARS and not lead_text.endswith(
        (*_SENTENCE_END, "，", "：", ",", ":", "、")
    ):
        return lead_text
    return ""


def decode_text(data: bytes) -> str:
    """Bytes → str: BOMs first, then strict UTF-8, then GB18030 (a superset of GBK and
    GB2312, the usual legacy encodings of Chinese documents), then a detector."""
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            return data.decode(encoding, errors="replace")
    if looks_binary(data):
        raise UnreadableError("binary content, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # GB18030 decodes almost any byte string, Big5 included, into nonsense; only text whose
    # double bytes all sit in the GB2312 area is certainly GB. The rest goes to a detector.
    if _gb2312_only(data):
        return data.decode("gb18030")
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is not None:
        return str(best)
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError:
        raise UnreadableError("unknown text encoding") from None


def _gb2312_only(data: bytes) -> bool:
    i, n = 0, len(data)
    while i < n:
        if data[i] < 0x80:
            i += 1
        elif i + 1 < n and 0xA1 <= data[i] <= 0xFE and 0xA1 <= data[i + 1] <= 0xFE:
            i += 2
        else:
            return False
    return True


def looks_binary(data: bytes) -> bool:
    sample = data[:8192]
    if b"\x00" in sample:
        return True
    control = sum(1 for b in sample if b < 32 and b not in (9, 10, 12, 13, 27))
    return control > len(sample) * 0.05


def read_front_matter(text: str) -> tuple[str, dict[str, str], list[str]]:
    """The text after a leading `---` YAML block, the block's scalar fields as strings,
    and notes on metadata fields it gives as lists or mappings, which are left out."""
    text = text.replace("\r\n", "\n")
    m = _FRONT_MATTER.match(text)
    if not m:
        return text, {}, []
    block = m.group(1)
    if len(block.encode("utf-8")) > MAX_FRONT_MATTER_BYTES:
        raise UnreadableError(f"front matter larger than {size_text(MAX_FRONT_MATTER_BYTES)}")
    try:
        data = yaml.load(block, Loader=_FrontMatterLoader)  # a SafeLoader: no Python objects
    except _AliasError:
        raise UnreadableError("front matter uses YAML aliases or anchors (*name, &name)") from None
    except RecursionError:
        raise UnreadableError("front matter nested too deeply") from None
    except yaml.YAMLError as err:
        raise UnreadableError(f"invalid front matter: {err}") from err
    if not isinstance(data, dict):
        return text, {}, []
    if "sample_notice" in data:
        data["notice"] = data.pop("sample_notice")
    meta, dropped = scalar_fields(data)
    return text[m.end() :], meta, _dropped_notes(dropped, "front matter")


class _AliasError(yaml.YAMLError):
    pass


class _FrontMatterLoader(yaml.SafeLoader):
    """SafeLoader without anchors and aliases. Nine nested lists of nine aliases expand to
    9^9 strings (a "billion laughs": 15 GB in 30 s); front matter never needs them."""

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise _AliasError("anchors and aliases are not allowed")
        return super().compose_node(parent, index)


_SCALARS = (str, int, float, datetime.date)  # bool is an int, datetime a date


def scalar_fields(fields: dict) -> tuple[dict[str, str], list[str]]:
    """The scalar values of `fields` as stripped strings, and the keys of those that are
    lists or mappings: their repr ("['a', 'b']") would pose as a title or a source."""
    meta: dict[str, str] = {}
    dropped: list[str] = []
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, _SCALARS):
            meta[str(key)] = str(value).strip()
        else:
            dropped.append(str(key))
    return meta, dropped


def _dropped_notes(keys: list[str], where: str) -> list[str]:
    """Notes on the metadata fields left out (other keys are never used: no note)."""
    return [
        f"{where}: {key} is not text (a list or mapping?); left out"
        for key in keys
        if key in META_FIELDS
    ]


# Elements that start a new line when shown; anything else (a, b, span, img, font …) is
# inline and may sit mid-sentence, so it must not break the line.
# fmt: off
_HTML_BLOCKS = frozenset({
    "address", "article", "aside", "blockquote", "body", "caption", "center", "dd", "details",
    "dialog", "dir", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form",
    "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup", "hr", "html", "legend", "li",
    "main", "menu", "nav", "ol", "p", "pre", "section", "summary", "table", "tbody", "tfoot",
    "thead", "title", "tr", "ul",
})
# fmt: on
_HTML_CELLS = frozenset(("td", "th"))
_HTML_PRE = frozenset(("pre", "textarea", "listing", "plaintext", "xmp"))
_HTML_SPACE = re.compile(r"[ \t\n\r\f]+")
# A source line break between two CJK characters is no space at all when rendered:
# "给予一次性\n奖励" reads 给予一次性奖励 (CSS Text 3, segment break transformation).
_CJK = "\u2e80-\u2fff\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_CJK_BREAK = re.compile(rf"(?<=[{_CJK}])[ \t\r\f]*\n[ \t\n\r\f]*(?=[{_CJK}])")


def html_text(html: str) -> tuple[str, dict[str, str]]:
    """Visible text of a page, a line per block element, and its title/author/date/source."""
    from bs4 import BeautifulSoup
    from bs4.element import CData, NavigableString

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "nav", "footer"]):
        tag.decompose()
    meta = {}
    if soup.title and soup.title.string:
        meta["title"] = normalize_whitespace(soup.title.string)
    for name, key in (("author", "author"), ("date", "date"), ("source", "source")):
        tag = soup.find("meta", attrs={"name": name})
        if tag and tag.get("content"):
            meta[key] = str(tag["content"])
    body = soup.body or soup
    # As a browser shows it: source whitespace collapses to one space (outside <pre>), and
    # only blocks, <br> and table cells separate text: an inline <img> or <span> mid-sentence
    # must not cut a clause from its cap.
    for text in list(body.find_all(string=True)):
        if type(text) in (NavigableString, CData) and not any(
            parent.name in _HTML_PRE for parent in text.parents
        ):
            text.replace_with(_HTML_SPACE.sub(" ", _CJK_BREAK.sub("", str(text))))
    for tag in list(body.find_all(True)):
        if tag.name == "br":
            tag.replace_with("\n")
        elif tag.name in _HTML_BLOCKS:
            tag.insert_before("\n")
            tag.insert_after("\n")
        elif tag.name in _HTML_CELLS:
            tag.insert_after(" ")
    return body.get_text(""), meta


# pypdf logs (and sometimes `warnings.warn`s) what it repairs in a slightly broken file;
# on stderr that spoils `rag ingest --json`. Both are process-wide switches, hence the lock.
_PYPDF_QUIET = threading.Lock()


@contextmanager
def _quiet_pypdf() -> Iterator[None]:
    """pypdf's repair notes silenced; its exceptions still propagate."""
    logger = logging.getLogger("pypdf")
    with _PYPDF_QUIET, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            logger.setLevel(level)


def pdf_pages(data: bytes) -> tuple[list[str], dict[str, str], list[str]]:
    """Each page's text, the file's metadata, and notes on pages that could not be read.
    A page without a text layer (a scan) is read by OCR; the metadata then says so."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    with _quiet_pypdf():
        try:
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted:
                raise UnreadableError("encrypted PDF")
            pages = [page.extract_text() or "" for page in reader.pages]
            info = reader.metadata or {}
        except PdfReadError as err:
            raise UnreadableError(f"not a readable PDF ({err})") from err
    meta = {"title": str(info.get("/Title") or ""), "author": str(info.get("/Author") or "")}
    for n, text in pdf_tables(data, [n for n, text in enumerate(pages) if looks_tabular(text)]):
        pages[n] = text
    scanned = [n for n, text in enumerate(pages) if len(text.strip()) < MIN_PAGE_CHARS]
    notes: list[str] = []
    if scanned:
        from rag.ocr import Reader, pdf_page_images

        ocr = Reader()
        for n, image in pdf_page_images(data, scanned):
            pages[n] = ocr.page(image) or pages[n]
            if not pages[n].strip():
                notes.append(f"page {n + 1}: no text, and OCR could read none")
        meta["ocr"] = "true"
    if not "".join(pages).strip():
        raise NoTextError(f"no text on its {len(pages)} page(s), not even by OCR")
    return pages, meta, notes


def looks_tabular(text: str) -> bool:
    """Whether a page's text layer reads like a table flattened into one cell per line
    (pypdf's way): many short lines. Only such pages pay for pdfplumber's layout pass."""
    short = [line for line in text.splitlines() if 0 < len(line.strip()) <= TABLE_CELL_CHARS]
    return len(short) >= TABLE_MIN_CELLS


def pdf_tables(data: bytes, numbers: list[int]) -> Iterator[tuple[int, str]]:
    """(page, text) for those of the pages `numbers` that hold ruled tables: the text
    around the tables as it reads, each table as its rows with their header (rag.tables)
    where it stood. A page pdfplumber cannot lay out keeps pypdf's text (logged)."""
    if not numbers:
        return
    import pdfplumber

    with pdfplumber.open(io.BytesIO(data)) as pdf:
        for n in numbers:
            try:
                page = pdf.pages[n]
                tables = page.find_tables()
                if not tables:
                    continue
                boxes = [table.bbox for table in tables]
                rest = page.filter(lambda obj, boxes=boxes: not _inside_any(obj, boxes))
                pieces = [(line["top"], line["text"]) for line in rest.extract_text_lines()]
                pieces += [(t.bbox[1], "\n".join(row_lines(t.extract()))) for t in tables]
            except Exception as err:  # pdfminer raises many kinds on odd pages
                log.warning("page %d: tables not read (%s); its plain text is kept", n + 1, err)
                continue
            yield n, "\n".join(text for _, text in sorted(pieces, key=lambda p: p[0]))


def _inside_any(obj: dict, boxes: list[tuple[float, float, float, float]]) -> bool:
    x0, top, x1, bottom = (obj.get(k, 0) for k in ("x0", "top", "x1", "bottom"))
    return any(
        x0 >= b[0] - 1 and x1 <= b[2] + 1 and top >= b[1] - 1 and bottom <= b[3] + 1 for b in boxes
    )


def image_text(data: bytes) -> tuple[list[str], list[str]]:
    """The text of each page (frame) of an image, by OCR, and notes on unreadable ones."""
    from rag.ocr import Reader, image_pages

    try:
        frames = list(image_pages(data))
    except Exception as err:  # Pillow raises many kinds on a damaged file
        raise UnreadableError(f"not a readable image ({type(err).__name__})") from err
    reader = Reader()
    pages = [reader.page(frame) for frame in frames]
    notes = [f"page {n}: OCR could read no text" for n, p in enumerate(pages, 1) if not p]
    if not "".join(pages).strip():
        raise NoTextError("OCR found no text in the image")
    return pages, notes


def xlsx_text(data: bytes) -> tuple[str, dict[str, str]]:
    """Each sheet as its name, then its rows with their header (rag.tables); a cell
    merged over several is repeated in each, as a reader of the sheet sees it."""
    import openpyxl

    _refuse_zip_bomb(data)
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), data_only=True)
    except Exception as err:  # openpyxl raises many kinds on a damaged file
        raise UnreadableError(f"not a readable .xlsx ({type(err).__name__}: {err})") from err
    lines: list[str] = []
    for sheet in book.worksheets:
        for merged in list(sheet.merged_cells.ranges):
            value = sheet.cell(merged.min_row, merged.min_col).value
            sheet.unmerge_cells(str(merged))
            for row in sheet.iter_rows(
                min_row=merged.min_row, max_row=merged.max_row,
                min_col=merged.min_col, max_col=merged.max_col,
            ):  # fmt: skip
                for cell in row:
                    cell.value = value
        rows = [[_cell_text(v) for v in row] for row in sheet.iter_rows(values_only=True)]
        body = row_lines(rows)
        if body:
            lines += [sheet.title, *body, ""]
    if not lines:
        raise NoTextError(".xlsx has no cells with text")
    return "\n".join(lines), {"title": book.properties.title or ""}


def csv_text(data: bytes) -> tuple[str, dict[str, str]]:
    """The rows of a .csv (comma, tab or semicolon separated) with their header."""
    text = decode_text(data)
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",\t;，")
    except csv.Error:
        dialect = csv.excel
    lines = row_lines(list(csv.reader(io.StringIO(text), dialect)))
    if not lines:
        raise NoTextError(".csv has no cells with text")
    return "\n".join(lines), {}


def _cell_text(value) -> str:
    """A spreadsheet value as a person reads it: 200.0 is 200, a date is 2024-03-15."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "date") and callable(value.date):
        return value.date().isoformat()
    return str(value)


def _refuse_zip_bomb(data: bytes) -> None:
    try:
        check_unpacked_size(data)
    except OfficeError as err:
        raise UnreadableError(str(err)) from None


def docx_text(data: bytes) -> tuple[str, dict[str, str]]:
    import docx
    from docx.table import Table

    _refuse_zip_bomb(data)
    try:
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as err:
        raise UnreadableError(f"not a readable .docx ({err})") from err
    paragraphs = []
    for block in document.iter_inner_content():  # paragraphs and tables, in order
        if isinstance(block, Table):
            paragraphs += row_lines([[cell.text for cell in row.cells] for row in block.rows])
        else:
            paragraphs.append(block.text)
    if not "".join(paragraphs).strip():
        raise NoTextError(".docx has no text (only images?)")
    props = document.core_properties
    meta = {
        "title": props.title or "",
        "author": props.author or "",
        "date": props.created.date().isoformat() if props.created else "",
    }
    return "\n".join(paragraphs), meta


def iter_records(path: Path) -> Iterator[Source | LoadFailure]:
    """JSONL records `{"id", "text", ["title", "date", "source", "url"]}`, plain or gzipped.

    A line over MAX_RECORD_BYTES is a failure and reading goes on; a .gz that unpacks to
    more than MAX_UNPACKED_RECORDS_BYTES ends in a failure saying it was stopped there."""
    gzipped = path.name.lower().endswith(".gz")
    opener = gzip.open if gzipped else open
    try:
        with opener(path, "rb") as fh:
            lines = _record_lines(fh, MAX_UNPACKED_RECORDS_BYTES if gzipped else None)
            for line_no, line in enumerate(lines, 1):
                where = f"{path}:{line_no}"
                if line is None:
                    yield LoadFailure(
                        where, f"record longer than {size_text(MAX_RECORD_BYTES)}; skipped"
                    )
                    continue
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError) as err:
                    yield LoadFailure(where, f"not valid JSON ({err})")
                    continue
                if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                    yield LoadFailure(where, 'record needs a string "text"')
                    continue
                record_id = record.get("id")
                if not isinstance(record_id, _SCALARS) or not str(record_id).strip():
                    yield LoadFailure(where, 'record needs an "id" (a string or number)')
                    continue
                yield Source(
                    str(record["id"]), where, raw_hash(line), partial(_parse_record, record)
                )
    except UnreadableError as err:
        yield LoadFailure(str(path), str(err))
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as err:
        yield LoadFailure(str(path), f"cannot read ({err})")


def _record_lines(fh: io.BufferedIOBase, max_total: int | None) -> Iterator[bytes | None]:
    """Each line of `fh`, or None for one over MAX_RECORD_BYTES, read past and never held.
    Once more than `max_total` bytes are read (None: no limit): UnreadableError."""
    limit = MAX_RECORD_BYTES
    while line := fh.readline(limit + 1):
        too_long = len(line) > limit and not line.endswith(b"\n")
        while too_long and (rest := fh.readline(_ZIP_CHUNK)) and not rest.endswith(b"\n"):
            _check_read(fh, max_total)
        _check_read(fh, max_total)
        yield None if too_long else line


def _check_read(fh: io.BufferedIOBase, max_total: int | None) -> None:
    if max_total is not None and fh.tell() > max_total:
        raise UnreadableError(
            f"unpacks to more than {size_text(max_total)} (a gzip bomb?); stopped"
        )


def _parse_record(record: dict) -> Document:
    fields = {k: record[k] for k in META_FIELDS if k in record}
    meta, dropped = scalar_fields(fields)
    notes = _dropped_notes(dropped, "record")
    return make_document(str(record["id"]), record["text"], meta, notes=notes)


_ZIP_UTF8 = 0x800  # general-purpose flag bit 11: the entry's name is UTF-8
_ZIP_ENCRYPTED = 0x1
_ZIP_CHUNK = 2**20


def unpack_zip(
    data: bytes, max_files: int = 1000, max_total_bytes: int = 200 * 2**20
) -> Iterator[tuple[str, bytes] | LoadFailure]:
    """The supported files of an uploaded .zip as (relative posix path, bytes), in archive
    order; whatever is refused becomes a `LoadFailure` whose path is the entry's name ("" for
    the zip itself). Nothing is written anywhere: the caller decides where the files go.

    Hidden files and folders and `__MACOSX/` are skipped silently. Refused: absolute paths
    and `..` (zip slip), symlinks, encrypted entries, entries over MAX_FILE_BYTES, formats
    `supported()` rejects. Once more than `max_files` entries or `max_total_bytes` of
    unpacked data (counted as read: sizes in headers may lie, a zip bomb's do) have come
    out, a last failure says so and unpacking stops.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = archive.infolist()
    except Exception as err:  # zipfile raises all sorts on a malformed archive
        yield LoadFailure("", f"not a readable .zip ({type(err).__name__}: {err})")
        return
    total = files = 0
    seen: set[str] = set()
    with archive:
        for info in entries:
            name = _zip_name(info)
            if info.is_dir() or name.endswith("/"):
                continue
            parts = [part for part in name.split("/") if part not in ("", ".")]
            unsafe = _zip_slip(name, parts)
            if unsafe is None and (parts[0] == "__MACOSX" or any(p[0] == "." for p in parts)):
                continue  # Finder's resource forks, .DS_Store, .git: not documents
            refused = unsafe or _zip_refusal(info, parts)
            files += 1
            if files > max_files:
                yield LoadFailure(name, f"more than {max_files} files in the zip; stopped")
                return
            rel = "/".join(parts)
            if refused is None and rel in seen:
                refused = "a second entry of that name; skipped"
            if refused is not None:
                yield LoadFailure(name, refused)
                continue
            cap = min(MAX_FILE_BYTES, max_total_bytes - total)
            buf = bytearray()
            try:
                with archive.open(info) as fh:
                    while len(buf) <= cap and (
                        chunk := fh.read(min(_ZIP_CHUNK, cap + 1 - len(buf)))
                    ):
                        buf += chunk
            except Exception as err:  # bad CRC, zlib.error, unknown method: one bad entry
                total += len(buf)  # what it unpacked before failing counts all the same
                yield LoadFailure(name, f"cannot unpack ({type(err).__name__}: {err})")
                continue
            total += len(buf)
            if len(buf) > cap:
                if cap < MAX_FILE_BYTES:  # the zip's budget ran out, not the file's
                    yield LoadFailure(
                        name,
                        f"the zip unpacks to more than {size_text(max_total_bytes)} (a zip bomb?); stopped",
                    )
                    return
                yield LoadFailure(name, f"larger than {size_text(MAX_FILE_BYTES)}")
                continue
            seen.add(rel)
            yield rel, bytes(buf)


def _zip_name(info: zipfile.ZipInfo) -> str:
    """The entry's name as its author saw it, `/`-separated.

    Without the UTF-8 flag Python decodes names as cp437, the zip default, but Chinese
    Windows writes GBK and macOS writes UTF-8 without setting the flag. cp437 maps all 256
    bytes, so encoding back recovers the raw name; UTF-8 is tried first because it is
    strict (GBK bytes rarely pass), GB18030 decodes nearly anything.
    """
    name = info.filename
    if not info.flag_bits & _ZIP_UTF8:
        try:
            raw = name.encode("cp437")
        except UnicodeEncodeError:
            raw = b""
        if raw and not raw.isascii():
            for encoding in ("utf-8", "gb18030"):
                try:
                    name = raw.decode(encoding)
                    break
                except UnicodeDecodeError:
                    continue
    return name.replace("\\", "/")  # some Windows tools write backslashes


def _zip_slip(name: str, parts: list[str]) -> str | None:
    """Why the entry's path could land outside the folder it is unpacked to, or None."""
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return "absolute path in the zip; skipped"
    if ".." in parts:
        return "path leads out of the zip's folder (..); skipped"
    if not parts:
        return "entry without a name; skipped"
    return None


def _zip_refusal(info: zipfile.ZipInfo, parts: list[str]) -> str | None:
    """Why a safely named entry is still not unpacked, or None."""
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symlink in the zip; skipped"
    if info.flag_bits & _ZIP_ENCRYPTED:
        return "encrypted entry; skipped"
    if not supported(PurePosixPath(parts[-1])):
        suffix = PurePosixPath(parts[-1]).suffix or parts[-1]
        return f"unsupported format '{suffix}'"
    if info.file_size > MAX_FILE_BYTES:  # trusted to refuse, never to accept
        return f"larger than {size_text(MAX_FILE_BYTES)}"
    return None
