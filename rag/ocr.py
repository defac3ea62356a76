"""Text from pictures of pages: scanned PDFs (rendered with pypdfium2) and images
(.png .jpg .tif) through RapidOCR, whose PP-OCRv4 detection, recognition and direction
models (Chinese and English) ship inside the rapidocr-onnxruntime wheel: nothing is
downloaded, ONNX Runtime runs them on the CPU.

OCR gives boxes of text; rag.layout puts them back in reading order.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np

from rag.layout import Box, reading_text

RENDER_SCALE = 2.0  # PDF points → pixels (144 dpi): small print stays legible, pages fast
MIN_SCORE = 0.5  # recognitions the model itself doubts more than this are dropped


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
