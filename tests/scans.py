"""Scans made by the tests: Chinese text rendered to page images (Pillow, Noto CJK from
fonts-noto-cjk), saved as a PDF of images with no text layer, as a scanner makes them."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
A4 = (1240, 1754)  # pixels at 150 dpi
PER_LINE = 36  # characters a line holds at the size below


def page_image(paragraphs: list[str], size: int = 30):
    """One page: each paragraph wrapped at PER_LINE characters, black on white."""
    font = ImageFont.truetype(str(FONT), size)
    image = Image.new("L", A4, 255)
    draw = ImageDraw.Draw(image)
    y = 120
    for paragraph in paragraphs:
        for start in range(0, len(paragraph), PER_LINE):
            draw.text((100, y), paragraph[start : start + PER_LINE], font=font, fill=0)
            y += int(size * 1.6)
        y += size
    return image


def scanned_pdf(pages: list[list[str]]) -> bytes:
    """A PDF whose pages are images of `pages` (paragraphs each): no text layer."""
    images = [page_image(paragraphs).convert("RGB") for paragraphs in pages]
    out = io.BytesIO()
    images[0].save(out, format="PDF", save_all=True, append_images=images[1:], resolution=150)
    return out.getvalue()


def png(paragraphs: list[str]) -> bytes:
    out = io.BytesIO()
    page_image(paragraphs).save(out, format="PNG")
    return out.getvalue()
