"""Text placed on a page (OCR boxes, an OFD's text objects) back in reading order: lines
top to bottom, left to right, and the lines a paragraph was wrapped into joined. Pure,
tested with boxes written inline."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import median


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
    height = median(b.height for b in boxes)
    out = []
    for line in lines:
        line.sort(key=lambda b: b.left)
        out.append("".join(b.text for b in line))
        full = margin - line[-1].right < 2 * height  # within two characters of the margin
        out.append("" if full else "\n")
    return "".join(out).strip()
