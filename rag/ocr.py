"""Text from pictures of pages: scanned PDFs (rendered with pypdfium2) and images
(.png .jpg .tif) through RapidOCR, whose PP-OCRv4 detection, recognition and direction
models (Chinese and English) ship inside the rapidocr-onnxruntime wheel: nothing is
downloaded, ONNX Runtime runs them on the CPU.

OCR gives boxes of text; `reading_text` puts them back in reading order and joins the
lines a paragraph was wrapped into (pure, tested with boxes written inline).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

RENDER_SCALE = 2.0  # PDF points → pixels (144 dpi): small print stays legible, pages fast
MIN_SCORE = 0.5  # recognitions the model itself doubts more than this are dropped


@dataclass(frozen=True)
class Box:
    text: str
    left: float
    top: float
    right: float
    bottom: float

    @property
    def middle(self) -> float:
        return (self.top + self.bottom) / 2

    @property
    def height(self) -> float:
        return self.bottom - self.top


def reading_text(boxes: list[Box]) -> str:
    """The boxes of one page as text: lines top to bottom (boxes whose middles lie within
    half a line height of each other form one line, read left to right); a line that
    reaches the right margin continues into the next one (a wrapped paragraph), any other
    ends its paragraph."""
    if not boxes:
        return ""
    lines: list[list[Box]] = []
    for box in sorted(boxes, key=lambda b: b.middle):
        line = lines[-1] if lines else None
        if line and abs(box.middle - line[0].middle) <= 0.5 * max(line[0].height, box.height):
            line.append(box)
        else:
            lines.append([box])
    margin = max(b.right for b in boxes)
    height = float(np.median([b.height for b in boxes]))
    out = []
    for line in lines:
        line.sort(key=lambda b: b.left)
        out.append("".join(b.text for b in line))
        full = margin - line[-1].right < 2 * height  # within two characters of the margin
        out.append("" if full else "\n")
    return "".join(out).strip()


class Reader:
    """The OCR engine, loaded once per reader (~0.3 s); one reader per document."""

    def __init__(self):
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:
            raise RuntimeError(
                f"OCR needs rapidocr-onnxruntime ({exc.name} is missing): "
                "pip install rapidocr-onnxruntime"
            ) from None
        self.engine = RapidOCR()

    def page(self, image) -> str:
        """The text of one page image (a PIL image); "" when nothing could be read."""
        pixels = np.asarray(image.convert("RGB"))
        found, _ = self.engine(pixels)
        boxes = [
            Box(
                text,
                min(x for x, _ in q),
                min(y for _, y in q),
                max(x for x, _ in q),
                max(y for _, y in q),
            )
            for q, text, score in found or []
            if float(score) >= MIN_SCORE and text.strip()
        ]
        return reading_text(boxes)


def pdf_page_images(data: bytes, numbers: list[int]) -> Iterator[tuple[int, object]]:
    """(page number, PIL image) of the given 0-based pages of a PDF."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(data)
    try:
        for n in numbers:
            page = pdf[n]
            yield n, page.render(scale=RENDER_SCALE).to_pil()
            page.close()
    finally:
        pdf.close()


def image_pages(data: bytes) -> Iterator[object]:
    """Each frame of an image file (a multi-page TIFF has several) as a PIL image."""
    from PIL import Image, ImageSequence

    with Image.open(io.BytesIO(data)) as image:
        for frame in ImageSequence.Iterator(image):
            yield frame.copy()
