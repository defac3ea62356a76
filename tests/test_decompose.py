"""Splitting comparison questions: pure function, Chinese examples inline."""

import pytest

from rag.decompose import split_comparison


@pytest.mark.parametrize(
    ("question", "parts"),
    [
        # what follows the last item is shared: numbers and time words end an item
        (
            "北京和上海2021年的GDP分别是多少？",
            ["北京2021年的GDP是多少？", "上海2021年的GDP是多少？"],
        ),
        # what precedes the first item too
        (
            "明川区的飞地政策和楼宇政策的申报截止日期分别是哪天",
            ["明川区的飞地政策的申报截止日期是哪天", "明川区的楼宇政策的申报截止日期是哪天"],
        ),
        # a preposition after the last item starts the shared part; one may start an item
        (
            "飞地项目企业和楼宇企业按区级经济贡献奖励，第一年比例分别是多少？",
            [
                "飞地项目企业按区级经济贡献奖励，第一年比例是多少？",
                "楼宇企业按区级经济贡献奖励，第一年比例是多少？",
            ],
        ),
        (
            "在写字楼租办公室和在飞地园区租标准厂房，第一年租金补贴比例各是多少？",
            [
                "在写字楼租办公室，第一年租金补贴比例是多少？",
                "在飞地园区租标准厂房，第一年租金补贴比例是多少？",
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
    ],
)
def test_a_comparison_becomes_one_question_per_item(question, parts):
    assert split_comparison(question) == parts


def test_after_a_comma_the_first_item_is_the_whole_clause_before_it():
    parts = split_comparison("总部企业的落户奖励，和楼宇企业的租金补贴，分别是多少？")
    assert parts[0].startswith("总部企业的落户奖励") and "楼宇" not in parts[0]
    assert parts[1].startswith("楼宇企业") and "总部" not in parts[1]


@pytest.mark.parametrize(
    "question",
    [
        "莱芜区上半年实际使用外资多少？",  # compares nothing
        "和平区的人口是多少？",  # 和 inside a name, no 分别
        "各区县的外资分别是多少？",  # 分别 but no conjunction
        "2022年和2023年考研报名人数分别是多少？",  # items that are only years: not split with confidence
    ],
)
def test_other_questions_stay_whole(question):
    assert split_comparison(question) == [question]
