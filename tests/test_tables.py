"""Tables as lines that carry their header (rag.tables), with award tables inline."""

from rag.tables import header_rows, row_lines

AWARDS = [
    ["奖励类别", "注册资本", "奖励"],
    ["总部企业", "5000万元以上", "200万元"],
    ["区域总部", "1000万元以上", "50万元"],
]


def test_each_row_repeats_what_its_columns_mean():
    assert row_lines(AWARDS) == [
        "奖励类别；注册资本；奖励",
        "奖励类别：总部企业；注册资本：5000万元以上；奖励：200万元。",
        "奖励类别：区域总部；注册资本：1000万元以上；奖励：50万元。",
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
        "企业类型：总部企业；奖励标准·金额：200万元；奖励标准·兑现方式：分三年兑现。",
        "企业类型：研发中心；奖励标准·金额：100万元；奖励标准·兑现方式：一次性兑现。",
    ]


def test_empty_cells_and_rows_repeated_by_a_vertical_merge_are_left_out():
    rows = [
        ["项目", "标准", "备注"],
        ["租金补贴", "50%", ""],
        ["租金补贴", "50%", ""],
        ["", "", ""],
    ]
    assert row_lines(rows) == ["项目；标准；备注", "项目：租金补贴；标准：50%。"]
    assert row_lines([]) == [] and row_lines([["", ""]]) == []
