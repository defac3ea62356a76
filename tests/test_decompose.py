"""Splitting comparison questions: pure function, Chinese examples inline."""

import pytest

from rag.decompose import split_comparison


@pytest.mark.parametrize(
    ("question", "parts"),
    [
        # what follows the last item is shared: a year ends an item, “500强” does not
        (
            "北京和上海2021年的GDP分别是多少？",
            ["北京2021年的GDP是多少？", "上海2021年的GDP是多少？"],
        ),
        (
            "新引进的世界500强企业和中国500强企业分别奖励多少万元？",
            ["新引进的世界500强企业奖励多少万元？", "新引进的中国500强企业奖励多少万元？"],
        ),
        (
            "A公司和B公司的2023年营收分别是多少",
            ["A公司的2023年营收是多少", "B公司的2023年营收是多少"],
        ),
        # a first item that only modifies: the noun after the last item is shared
        ("省级和市级奖励分别是多少？", ["省级奖励是多少？", "市级奖励是多少？"]),
        # items that start with a preposition are phrases, verbs and all
        (
            "在商务楼宇租办公室和在产业园租厂房，首年补贴各是多少？",
            ["在商务楼宇租办公室，首年补贴是多少？", "在产业园租厂房，首年补贴是多少？"],
        ),
        # a preposition after the last item's first word starts the shared part
        (
            "总部企业和楼宇企业按区级经济贡献奖励，比例分别是多少？",
            [
                "总部企业按区级经济贡献奖励，比例是多少？",
                "楼宇企业按区级经济贡献奖励，比例是多少？",
            ],
        ),
        # more than two items
        (
            "莱芜区、钢城区与章丘区的签约项目各有多少个？",
            [
                "莱芜区的签约项目有多少个？",
                "钢城区的签约项目有多少个？",
                "章丘区的签约项目有多少个？",
            ],
        ),
        # after “，和” each item is a whole clause
        (
            "总部企业的落户奖励，和楼宇企业的租金补贴，分别是多少？",
            ["总部企业的落户奖励，是多少？", "楼宇企业的租金补贴，是多少？"],
        ),
    ],
)
def test_a_comparison_becomes_one_question_per_item(question, parts):
    assert split_comparison(question) == parts


@pytest.mark.parametrize(
    "question",
    [
        "莱芜区上半年实际使用外资多少？",  # compares nothing
        "和平区的人口是多少？",  # 和 inside a name, no 分别
        "各区县的外资分别是多少？",  # 分别 but no conjunction
        "2022年和2023年考研报名人数分别是多少？",  # items that are only years
        "飞地政策和楼宇政策的奖励和补贴分别是多少？",  # two 和 in different roles
        "飞地政策" + "和楼宇政策" * 20 + "分别是什么？",  # a list, not a comparison
        "甲、乙、丙、丁和戊分别是多少？",  # five items, too short to be sure of
        "国家级、省级、市级、区级和街道级孵化器分别奖励多少？",  # five items: a list
        # edges the parse cannot be sure of
        "北京的地铁和上海的公交票价分别是多少？",  # X的A和Y的B
        "明川区的飞地政策和楼宇政策的申报截止日期分别是哪天",  # the same shape, asked whole too
        "莱芜区和钢城区签约了哪些项目，分别是什么行业？",  # a verb against an item
        "对省级和市级认定的企业分别奖励多少？",
        "税收收入和非税收入各占一般公共预算收入的比重是多少？",
        "企业所得税和增值税的优惠政策分别是什么，各自的申报期限是多久？",  # two comparisons
        "A方案和B方案各有千秋，哪个更适合中小企业？",  # 各 that asks for no value
        "和分别",
        "，和，分别",
    ],
)
def test_other_questions_stay_whole(question):
    assert split_comparison(question) == [question]
