"""Cleaning and metadata: pure functions over strings.

Chinese news files arrive with full-width spaces, `\\r\\n`, a header (title, a line like
`2022-08-04 作者: 赵国陆 来源: 大众日报`, `□记 者` / `通讯员` bylines) and sometimes their
whole body twice. We normalise, lift the header into metadata and keep each paragraph once.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from rag.figures import DATE_PARTS, iso_date

# A paragraph shorter than this may legitimately repeat (e.g. "第一章 总则" in two files
# concatenated); longer repeats are copies.
MIN_REPEATED_PARAGRAPH = 8
# Header and byline lines are short; a longer line with a date and 来源 is body text.
MAX_HEADER_LINE = 60

_SPACES = re.compile(r"[ \t\u00a0\u2002\u2003\u2009\u3000\ufeff]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_AUTHOR = re.compile(r"作\s*者\s*[:：]\s*(\S+)")
_SOURCE = re.compile(r"来\s*源\s*[:：]\s*(\S+)")
_REPORTER = re.compile(r"^[□■◇◆]?\s*(本报)?记\s*者\s*(?P<names>[^\s报]{2,}(?:\s+[^\s报]{2,})*)")
# A byline holds names only: "□记 者 赵国陆", "通讯员 董萃萃 报道". A sentence that starts with
# 记者 ("记者从区商务局获悉，……") has punctuation and stays in the body.
_BYLINE = re.compile(
    r"^[□■◇◆]?\s*(本报)?(记\s*者|通讯员|实习生)(\s*[\u4e00-\u9fff·]{2,4})+(\s*报道)?\s*$"
)


@dataclass
class Cleaned:
    text: str
    meta: dict[str, str] = field(default_factory=dict)


def normalize_whitespace(text: str) -> str:
    """Unify line ends and blanks; strip each line; at most one empty line in a row."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


def parse_news_header(lines: list[str]) -> tuple[dict[str, str], set[int]]:
    """Find a news header in the first lines: returns metadata and the indices it used.

    The header is recognised by a dateline (a date with 作者/来源, or a bare date line)
    within the first four non-empty lines; the non-empty line before it is the title.
    """
    meta: dict[str, str] = {}
    used: set[int] = set()
    head = [i for i, line in enumerate(lines) if line][:4]
    for pos, i in enumerate(head):
        line = lines[i]
        if len(line) > MAX_HEADER_LINE:
            continue
        date = iso_date(line)
        has_fields = bool(_AUTHOR.search(line) or _SOURCE.search(line))
        bare_date = bool(date) and len(DATE_PARTS.sub("", line).strip()) <= 4
        if date and (has_fields or bare_date):
            meta["date"] = date
            if m := _AUTHOR.search(line):
                meta["author"] = m.group(1)
            if m := _SOURCE.search(line):
                meta["source"] = m.group(1)
            used.add(i)
            if pos > 0 and len(lines[head[pos - 1]]) <= MAX_HEADER_LINE:
                title_line = head[pos - 1]
                meta["title"] = lines[title_line]
                used.add(title_line)
            break
    if not meta:
        return {}, set()
    for i, line in enumerate(lines):
        if _BYLINE.match(line):
            used.add(i)
            if "author" not in meta and (m := _REPORTER.match(line)):
                meta["author"] = m.group("names").replace(" ", "、")
    meta.setdefault("doc_type", "news")
    return meta, used


def drop_repeated_paragraphs(paragraphs: list[str]) -> list[str]:
    """Keep the first occurrence of each paragraph (compared after NFKC and without blanks)."""
    seen: set[str] = set()
    kept = []
    for para in paragraphs:
        key = re.sub(r"\s+", "", unicodedata.normalize("NFKC", para))
        if len(key) >= MIN_REPEATED_PARAGRAPH:
            if key in seen:
                continue
            seen.add(key)
        kept.append(para)
    return kept


def clean(raw: str) -> Cleaned:
    """Raw decoded text → cleaned text (one paragraph per line) and header metadata."""
    lines = normalize_whitespace(raw).split("\n")
    meta, used = parse_news_header(lines)
    body = [line for i, line in enumerate(lines) if i not in used and line]
    return Cleaned("\n".join(drop_repeated_paragraphs(body)), meta)
