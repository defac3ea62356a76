"""Tables as text a passage can carry: one line per row that repeats what each column
means ("奖励类别：总部企业，注册资本：5000万元以上，奖励：200万元。"), so that a chunk
holding any row holds its header too. Cells are joined by commas, not semicolons: a
semicolon ends a sentence for the splitter and the answerer, and a row is one sentence.

Pure: rows are lists of cell strings, as read from .docx, .xlsx or .csv. A cell merged
over several columns comes repeated in each (python-docx, and `expand_merged` for
spreadsheets), which is how a two-row header is recognised: a first row whose cells
repeat spans the columns of the second ("奖励标准" over "金额" and "条件").
"""

from __future__ import annotations

import itertools

MAX_HEADER_ROWS = 2


def _clean(cell: str | None) -> str:
    return " ".join(str(cell or "").split())


def header_rows(rows: list[list[str]]) -> int:
    """How many of the first rows are the header: one, or two when the first spans
    columns (a value repeated side by side) and the second does not."""
    if len(rows) < 3:
        return 1 if rows else 0
    first, second = rows[0], rows[1]
    spans = any(a and a == b for a, b in itertools.pairwise(first))
    distinct = len({c for c in second if c}) == len([c for c in second if c])
    return MAX_HEADER_ROWS if spans and distinct and any(second) else 1


def column_names(rows: list[list[str]], count: int) -> list[str]:
    """Each column's name: its header cells, top to bottom, a repeated one said once."""
    width = max(len(r) for r in rows)
    names = []
    for col in range(width):
        parts: list[str] = []
        for row in rows[:count]:
            cell = row[col] if col < len(row) else ""
            if cell and cell not in parts:
                parts.append(cell)
        names.append("·".join(parts))
    return names


def row_lines(rows: list[list[str]]) -> list[str]:
    """The table as lines: its header once as read, then one line per body row with each
    non-empty cell named by its column; a row identical to the one before (a merged
    cell spanning rows repeats it) is kept once."""
    rows = [[_clean(c) for c in row] for row in rows]
    rows = [row for row in rows if any(row)]
    if not rows:
        return []
    count = header_rows(rows)
    names = column_names(rows, count)
    lines = ["，".join(n for n in names if n)]
    previous: list[str] | None = None
    for row in rows[count:]:
        if row == previous:
            continue
        previous = row
        parts = [
            f"{name}：{cell}" if name else cell
            for name, cell in zip(names, row, strict=False)
            if cell
        ]
        if parts:
            lines.append("，".join(parts) + "。")
    return lines
