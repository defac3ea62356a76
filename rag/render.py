"""Answers as the browser shows them: pure functions from an answer object (the
`rag ask --json` shape) to escaped markdown and HTML.

Documents are untrusted: every piece of their text is escaped here before it is placed in
markup, and only markup written in this module gets through.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from urllib.parse import quote

from rag.grounding import MARKER, sentence_spans, unmarked

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~])")

UNVERIFIED_NOTE = "⚠️ 标注的句子含有未能在所引资料中核实的数字，请以原文为准。"
NOTHING_FOUND = "知识库中没有找到相关内容。可以换个说法，或放宽日期、来源筛选后再试。"


def escape(text: object) -> str:
    return html.escape(str(text), quote=True)


def escape_markdown(text: str) -> str:
    """Text that a markdown renderer shows literally: HTML entities for <>&\"', backslashes
    for markdown's own punctuation."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", escape(text))


def answer_markdown(answer: dict) -> str:
    """The answer for a chat bubble: escaped, each `[n]` linked to its source, a fallback
    notice above it, and ⚠️ after each sentence whose figures could not be verified."""
    text = answer["answer"]
    known = {c["n"] for c in answer["citations"]}
    unverified = set(answer.get("unverified", ()))
    parts, pos = [], 0
    for start, end in sentence_spans(text):
        parts.append(_linked(text[pos:start], known) + _linked(text[start:end], known))
        if unmarked(text[start:end]) in unverified:
            parts.append(" ⚠️")
        pos = end
    parts.append(_linked(text[pos:], known))
    markdown = "".join(parts)
    span = escape_markdown(answer.get("span") or "")
    if span and markdown.startswith(span + "："):  # the reading model's answer, in bold
        markdown = f"**{span}**{markdown[len(span) :]}"
    if unverified:
        markdown += f"\n\n{UNVERIFIED_NOTE}"
    if answer.get("notice"):
        markdown = f"> {escape_markdown(answer['notice'])}\n\n{markdown}"
    return markdown


def _linked(text: str, known: set[int]) -> str:
    """Escaped `text` with each marker of a known source linked to it."""
    parts, pos = [], 0
    for m in MARKER.finditer(text):
        n = int(m.group(1))
        if n not in known:
            continue
        parts.append(escape_markdown(text[pos : m.start()]))
        parts.append(f"[\\[{n}\\]](#rag-src-{n})")
        pos = m.end()
    parts.append(escape_markdown(text[pos:]))
    return "".join(parts)


def highlight(text: str, quotes: Sequence[str]) -> str:
    """Escape `text`, marking the quoted sentences (found in the raw text, then escaped
    piece by piece, so markup inside a document never gets through)."""
    spans = sorted((start, start + len(q)) for q in quotes if q and (start := text.find(q)) >= 0)
    out, pos = [], 0
    for start, end in spans:
        if start < pos:
            continue
        out.append(escape(text[pos:start]) + "<mark>" + escape(text[start:end]) + "</mark>")
        pos = end
    out.append(escape(text[pos:]))
    return "".join(out)


def sources_html(answer: dict | None) -> str:
    """The sources panel: one entry per citation (title, date, source, the passage with
    the quoted sentences highlighted), or a distinct box when nothing was found."""
    if answer is None:
        return '<div class="rag-sources rag-idle">提问后，这里会列出答案引用的原文段落。</div>'
    if answer["refused"] or not answer["citations"]:
        return f'<div class="rag-sources rag-empty" role="status">{escape(NOTHING_FOUND)}</div>'
    items = []
    for c in answer["citations"]:
        meta = " · ".join(
            escape(x) for x in (c.get("date"), c.get("source"), _page(c), c.get("article")) if x
        )
        items.append(
            f'<li id="rag-src-{int(c["n"])}" class="rag-source">'
            f'<div class="rag-source-title">[{int(c["n"])}] {escape(c.get("title") or c["doc_id"])}</div>'
            f'<div class="rag-source-meta">{meta}{_original_link(c)}</div>'
            f'<div class="rag-source-text">{highlight(c["text"], c.get("quotes", []))}</div></li>'
        )
    return f'<ol class="rag-sources">{"".join(items)}</ol>{related_html(answer)}'


def related_html(answer: dict) -> str:
    """The 相关条款 the answer left out, collapsed until the reader opens them."""
    related = answer.get("related") or []
    if not related:
        return ""
    items = "".join(
        f'<li class="rag-related-item"><div class="rag-related-text">{escape(r["text"])}</div>'
        f'<div class="rag-source-meta">{" · ".join(escape(x) for x in _place(r) if x)}</div></li>'
        for r in related
    )
    return (
        f'<details class="rag-related"><summary>相关条款（{len(related)}）</summary>'
        f"<ol>{items}</ol></details>"
    )


def _place(related: dict) -> tuple[str, str]:
    return related.get("title") or related["doc_id"], related.get("article") or ""


def unverified_text(answer: dict) -> str:
    """Plain-text warning listing the sentences whose figures could not be verified."""
    if not answer.get("unverified"):
        return ""
    lines = ["", "", "⚠ 以下句子中的数字未能在所引资料中核实，请以原文为准："]
    lines += [f"- {sentence}" for sentence in answer["unverified"]]
    return "\n".join(lines)


def sources_text(answer: dict) -> str:
    """Plain-text source list appended to chat-completion answers for clients that only
    show text."""
    if answer["refused"] or not answer["citations"]:
        return ""
    lines = ["", "", "来源："]
    for c in answer["citations"]:
        about = "，".join(
            x for x in (c.get("date"), c.get("source"), _page(c), c.get("article")) if x
        )
        lines.append(
            f"[{c['n']}] {c.get('title') or c['doc_id']}" + (f"（{about}）" if about else "")
        )
    return "\n".join(lines)


def _page(citation: dict) -> str:
    """ "第3页" for a citation of a paged document (PDF), else ""."""
    return f"第{int(citation['page'])}页" if citation.get("page") else ""


def _original_link(citation: dict) -> str:
    """A link that opens the kept original at the cited page (a PDF viewer reads #page=N),
    relative, so it also works under a proxy's sub-path; the route checks the reader."""
    if not citation.get("has_original"):
        return ""
    href = f"api/documents/{quote(citation['doc_id'], safe='/')}/original"
    page = citation.get("page")
    href += f"#page={int(page)}" if page else ""
    label = f"原文第{int(page)}页" if page else "原文"
    return (
        f' · <a class="rag-source-original" href="{escape(href)}" target="_blank"'
        f' rel="noopener">{label}</a>'
    )
