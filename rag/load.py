"""Loading: files and JSONL records → cleaned `Document`s, or a `LoadFailure` saying why not.

One bad file never stops a run: every problem becomes a failure naming the file and the
reason, and the caller goes on with the rest.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import yaml

from rag.clean import clean, iso_date, normalize_whitespace
from rag.types import META_FIELDS, Document

TEXT_SUFFIXES = (".txt", ".md")
FILE_SUFFIXES = (*TEXT_SUFFIXES, ".html", ".htm", ".pdf", ".docx")
RECORD_SUFFIXES = (".jsonl", ".jsonl.gz")
MAX_FILE_BYTES = 50 * 1024 * 1024

_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.S)


@dataclass(frozen=True)
class LoadFailure:
    path: str
    reason: str


class UnreadableError(ValueError):
    """A file that exists but holds no text we can use; the message says why."""


def supported(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(FILE_SUFFIXES) or name.endswith(RECORD_SUFFIXES)


def iter_files(root: Path) -> Iterator[Path]:
    """Every file under `root` (or `root` itself), sorted, skipping hidden files and folders."""
    if root.is_file():
        yield root
        return
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            yield path


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
        yield Source(doc_id, str(path), _hash(data), partial(_parse_file, path, doc_id, data))


def _hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def _parse_file(path: Path, doc_id: str, data: bytes) -> Document:
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
        raw = decode_text(data)
        raw, meta = split_front_matter(raw)
    elif suffix in (".html", ".htm"):
        raw, meta = html_text(decode_text(data))
    elif suffix == ".pdf":
        raw, meta = pdf_text(data)
    else:
        raw, meta = docx_text(data)
    return make_document(doc_id, raw, meta)


def make_document(doc_id: str, raw: str, meta: dict[str, str]) -> Document:
    """Clean `raw`; metadata given by the file wins over what the header parser found."""
    cleaned = clean(raw)
    if not cleaned.text:
        raise UnreadableError("no text after cleaning")
    merged = {**cleaned.meta, **{k: v for k, v in meta.items() if v}}
    if merged.get("date"):
        merged["date"] = iso_date(merged["date"]) or ""
    if not merged.get("title"):
        merged["title"] = title_line(cleaned.text)
    return Document(doc_id, cleaned.text, {k: merged.get(k, "") for k in META_FIELDS})


MAX_TITLE_CHARS = 40


def title_line(text: str) -> str:
    """The first line when it reads as a title (short, not a sentence), else "".

    A made-up title would mislead: titles are shown as sources and give sentences their
    context when answering, so a passage's first sentence must not pose as one.
    """
    first = text.split("\n", 1)[0].strip()
    if len(first) <= MAX_TITLE_CHARS and not first.endswith(
        ("。", "！", "？", "；", "…", ".", "!", "?")
    ):
        return first
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


def split_front_matter(text: str) -> tuple[str, dict[str, str]]:
    """A leading `---` YAML block (title, date, source, doc_type, region, sample_notice …)."""
    text = text.replace("\r\n", "\n")
    m = _FRONT_MATTER.match(text)
    if not m:
        return text, {}
    try:
        data = yaml.safe_load(m.group(1))
    except yaml.YAMLError as err:
        raise UnreadableError(f"invalid front matter: {err}") from err
    if not isinstance(data, dict):
        return text, {}
    meta = {str(k): str(v).strip() for k, v in data.items() if v is not None}
    if "sample_notice" in meta:
        meta["notice"] = meta.pop("sample_notice")
    return text[m.end() :], meta


def html_text(html: str) -> tuple[str, dict[str, str]]:
    from bs4 import BeautifulSoup

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
    return body.get_text("\n"), meta


def pdf_text(data: bytes) -> tuple[str, dict[str, str]]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise UnreadableError("encrypted PDF")
        pages = [page.extract_text() or "" for page in reader.pages]
    except PdfReadError as err:
        raise UnreadableError(f"not a readable PDF ({err})") from err
    if not "".join(pages).strip():
        raise UnreadableError("PDF has no text layer (scanned?); OCR it first")
    info = reader.metadata or {}
    meta = {"title": str(info.get("/Title") or ""), "author": str(info.get("/Author") or "")}
    return "\n".join(pages), meta


def docx_text(data: bytes) -> tuple[str, dict[str, str]]:
    import zipfile

    import docx

    try:
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as err:
        raise UnreadableError(f"not a readable .docx ({err})") from err
    paragraphs = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            paragraphs.append(" ".join(cell.text for cell in row.cells))
    props = document.core_properties
    meta = {
        "title": props.title or "",
        "author": props.author or "",
        "date": props.created.date().isoformat() if props.created else "",
    }
    return "\n".join(paragraphs), meta


def iter_records(path: Path) -> Iterator[Source | LoadFailure]:
    """JSONL records `{"id", "text", ["title", "date", "source", "url"]}`, plain or gzipped."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            for line_no, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                where = f"{path}:{line_no}"
                try:
                    record = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError) as err:
                    yield LoadFailure(where, f"not valid JSON ({err})")
                    continue
                if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                    yield LoadFailure(where, 'record needs a string "text"')
                    continue
                if not str(record.get("id", "")).strip():
                    yield LoadFailure(where, 'record needs an "id"')
                    continue
                yield Source(str(record["id"]), where, _hash(line), partial(_parse_record, record))
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        yield LoadFailure(str(path), f"cannot read ({err})")


def _parse_record(record: dict) -> Document:
    meta = {k: str(record[k]) for k in META_FIELDS if record.get(k) is not None}
    return make_document(str(record["id"]), record["text"], meta)
