"""Tables as lines that carry their header (rag.tables), with award tables inline."""

from rag.tables import header_rows, row_lines

AWARDS = [
    ["奖励类别", "注册资本", "奖励"],
    ["总部企业", "5000万元以上", "200万元"],
    ["区域总部", "1000万元以上", "50万元"],
]


def test_each_row_repeats_what_its_columns_mean():
    assert row_lines(AWARDS) == [
        "奖励类别，注册资本，奖励",
        "奖励类别：总部企业，注册资本：5000万元以上，奖励：200万元。",
        "奖励类别：区域总部，注册资本：1000万元以上，奖励：50万元。",
    ]


def test_a_merged_two_row_header_names_each_column_by_both_rows():
    merged = [
        ["企业类型", "奖励标准", "奖励标准"],  # 奖励标准 spans two columns
        ["企业类型", "金额", "兑现方式"],  # 企业类型 spans two rows
        ["总部企业", "200万元", "分三年兑现"],
        ["研发中心", "100万元", "一次性兑现"],
    ]
    assert header_rows([[c for c in r] for r in merged]) == 2
    assert row_lines(merged)[1:] == [
        "企业类型：总部企业，奖励标准·金额：200万元，奖励标准·兑现方式：分三年兑现。",
        "企业类型：研发中心，奖励标准·金额：100万元，奖励标准·兑现方式：一次性兑现。",
    ]


def test_empty_cells_and_rows_repeated_by_a_vertical_merge_are_left_out():
    rows = [
        ["项目", "标准", "备注"],
        ["租金补贴", "50%", ""],
        ["租金补贴", "50%", ""],
        ["", "", ""],
    ]
    assert row_lines(rows) == ["项目，标准，备注", "项目：租金补贴，标准：50%。"]
    assert row_lines([]) == [] and row_lines([["", ""]]) == []


def award_docx() -> bytes:
    """A policy with a table whose header spans two rows and two columns, as Word makes it."""
    import io

    import docx

    document = docx.Document()
    document.add_paragraph("明川区总部企业落户奖励办法")
    document.add_paragraph("第三条 总部企业落户奖励按下表执行：")
    table = document.add_table(rows=4, cols=3)
    cells = [
        ["企业类型", "奖励标准", ""],
        ["", "金额", "兑现方式"],
        ["总部企业", "200万元", "分三年兑现"],
        ["研发中心", "100万元", "一次性兑现"],
    ]
    for r, row in enumerate(cells):
        for c, text in enumerate(row):
            table.cell(r, c).text = text
    table.cell(0, 1).merge(table.cell(0, 2)).text = "奖励标准"
    table.cell(0, 0).merge(table.cell(1, 0)).text = "企业类型"
    document.add_paragraph("第四条 本办法自2025年1月1日起施行。")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_a_docx_table_keeps_its_place_and_each_row_its_header(tmp_path):
    from pathlib import Path

    from rag.load import load_file

    doc = load_file(Path("办法.docx"), "办法.docx", award_docx())
    lines = doc.text.splitlines()
    row = "企业类型：研发中心，奖励标准·金额：100万元，奖励标准·兑现方式：一次性兑现。"
    assert row in lines
    assert lines.index(row) < lines.index("第四条 本办法自2025年1月1日起施行。")
    assert lines.index("第三条 总部企业落户奖励按下表执行：") < lines.index(row)


def test_a_question_about_one_row_is_answered_with_the_headers_meaning(tmp_path, embeddings):
    from rag.chain import build_assistant
    from rag.config import Settings
    from rag.index import Index
    from rag.ingest import ingest

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "总部企业落户奖励办法.docx").write_bytes(award_docx())
    index = Index(tmp_path / "data", "tables", embeddings)
    ingest([tmp_path / "docs"], index, 300, 60)
    answer = build_assistant(Settings(), index).ask("研发中心落户奖励多少，怎么兑现？").to_json()
    assert "100万元" in answer["answer"] and "一次性兑现" in answer["answer"]
    assert "奖励标准·金额" in answer["answer"]  # the figure comes with what it is


def test_an_xlsx_award_table_and_a_csv_read_as_rows_with_their_header(tmp_path):
    import openpyxl

    from rag.load import load_file

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "外资奖励"
    for row in (
        ["到资规模", "奖励比例", "上限"],
        ["500万美元以上", 0.02, 200],
        ["1000万美元以上", 0.03, 500.0],
    ):
        sheet.append(row)
    book.save(tmp_path / "外资奖励标准.xlsx")
    doc = load_file(tmp_path / "x.xlsx", "x.xlsx", (tmp_path / "外资奖励标准.xlsx").read_bytes())
    assert doc.text.splitlines()[:2] == ["外资奖励", "到资规模，奖励比例，上限"]
    assert "到资规模：1000万美元以上，奖励比例：0.03，上限：500。" in doc.text
    assert doc.meta["title"] == "x"  # the file's name, not its header row
    csv_doc = load_file(
        tmp_path / "标准.csv", "标准.csv", "项目,标准\n租金补贴,50%\n".encode("gbk")
    )
    assert csv_doc.text.splitlines() == ["项目，标准", "项目：租金补贴，标准：50%。"]


def ruled_table_pdf() -> bytes:
    """A policy page with a ruled table, as a word processor exports it."""
    import io

    from reportlab.lib import colors
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Table, TableStyle

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    style = ParagraphStyle("zh", fontName="STSong-Light", fontSize=11, leading=16)
    table = Table(AWARDS)
    table.setStyle(
        TableStyle(
            [
                ("FONTNAME", (0, 0), (-1, -1), "STSong-Light"),
                ("GRID", (0, 0), (-1, -1), 0.5, colors.black),
            ]
        )
    )
    out = io.BytesIO()
    SimpleDocTemplate(out).build(
        [
            Paragraph("第三条 总部企业落户奖励按下表执行：", style),
            table,
            Paragraph("第四条 本办法自2025年1月1日起施行。", style),
        ]
    )
    return out.getvalue()


def test_a_ruled_table_in_a_pdf_reads_as_rows_with_their_header_in_place():
    from pathlib import Path

    from rag.load import load_file

    lines = load_file(Path("办法.pdf"), "办法.pdf", ruled_table_pdf()).text.splitlines()
    assert lines == [
        "第三条 总部企业落户奖励按下表执行：",
        "奖励类别，注册资本，奖励",
        "奖励类别：总部企业，注册资本：5000万元以上，奖励：200万元。",
        "奖励类别：区域总部，注册资本：1000万元以上，奖励：50万元。",
        "第四条 本办法自2025年1月1日起施行。",
    ]
