"""OCR of scanned policy pages: character accuracy against the text that was scanned, and
pages per second on this machine.

Usage: .venv/bin/python bench/ocr.py [--pages N] [--json]

The pages are the shipped policies (`corpus/policies/*.md`, front matter removed) rendered
as A4 scans at 150 dpi by tests/scans.py (Noto Sans CJK, 30 px, 36 characters a line),
saved as one PDF without a text layer, and read back by `rag.load.pdf_pages` as an
ingest reads it (pypdfium2 render at 144 dpi → RapidOCR PP-OCRv4 → reading order), before
cleaning (which drops a paragraph repeated on a later page, as the sample notice is).

Character accuracy = matched characters / the longer of source and OCR text, after NFKC
(full-width forms folded) with blanks removed; pages/s = pages / wall time of the read,
the model load included.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rag.load import pdf_pages, read_front_matter  # noqa: E402
from tests.scans import PER_LINE, scanned_pdf  # noqa: E402
from tests.test_ocr import character_accuracy  # noqa: E402

LINES_PER_PAGE = 30


def pages_of_policies(count: int) -> list[list[str]]:
    """The policies' paragraphs laid out in pages of at most LINES_PER_PAGE lines."""
    paragraphs = []
    for path in sorted((REPO / "corpus" / "policies").glob("*.md")):
        body, _, _ = read_front_matter(path.read_text("utf-8"))
        paragraphs += [
            line.strip().lstrip("#").strip() for line in body.splitlines() if line.strip()
        ]
    pages, page, lines = [], [], 0
    for paragraph in paragraphs:
        need = -(-len(paragraph) // PER_LINE) + 1
        if lines + need > LINES_PER_PAGE and page:
            pages.append(page)
            page, lines = [], 0
            if len(pages) == count:
                break
        page.append(paragraph)
        lines += need
    return pages[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    pages = pages_of_policies(args.pages)
    pdf = scanned_pdf(pages)
    start = time.perf_counter()
    read, _, notes = pdf_pages(pdf)
    seconds = time.perf_counter() - start
    per_page = [
        character_accuracy("".join(paragraphs), text)
        for paragraphs, text in zip(pages, read, strict=True)
    ]
    source = "".join(p for page in pages for p in page)
    result = {
        "pages": len(pages),
        "characters": len("".join(source.split())),
        "character_accuracy": round(character_accuracy(source, "".join(read)), 4),
        "worst_page_accuracy": round(min(per_page), 4),
        "seconds": round(seconds, 1),
        "pages_per_second": round(len(pages) / seconds, 3),
        "unread_pages": notes,
    }
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return
    for key, value in result.items():
        print(f"{key:22} {value}")


if __name__ == "__main__":
    main()
