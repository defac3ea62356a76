"""Honest scope as pure functions over Chinese strings, and through the chain."""

from rag.figures import years
from rag.scope import caveat, place_stem, places, uncovered

MINGCHUAN = "第六条 新引进企业租用商务楼宇自用办公的，第一年按实际租金的50%给予补贴。"


def test_places_and_years_are_read_from_the_question():
    assert places("杭州市滨江区对总部企业奖励多少？") == ["杭州市", "滨江区"]
    assert places("我国对外资企业有哪些支持？") == []  # names no place a corpus could lack
    assert places("广东省给高层次人才的安家补贴是多少？") == ["广东省"]  # jieba: 安家/ns
    assert places("深圳那边的飞地项目税收怎么分成？") == ["深圳"]
    assert place_stem("上海市") == "上海" and place_stem("滨江区") == "滨江"
    assert years("莱芜区2019年和2020 年实际使用外资多少？") == ["2019", "2020"]


def test_a_place_the_evidence_never_mentions_is_uncovered():
    evidence = [MINGCHUAN, "明川区支持楼宇经济高质量发展的实施办法", "青禾市明川区"]
    assert uncovered("上海市楼宇经济政策对租金补贴多少？", evidence) == ["上海市"]
    assert uncovered("明川区写字楼第一年租金补贴多少？", evidence) == []
    # The investor's home town is not what the question is about.
    assert uncovered("武汉的企业到明川区租写字楼，第一年补贴多少？", evidence) == []


def test_a_year_counts_as_covered_by_a_date_in_the_metadata():
    evidence = ["上半年，全区实际使用外资3227万美元。", "2022-08-04", "莱芜区集中签约"]
    assert uncovered("莱芜区2022年上半年实际使用外资多少？", evidence) == []
    assert uncovered("莱芜区2019年实际使用外资多少？", evidence) == ["2019年"]


def test_the_caveat_names_what_is_missing_and_what_the_passages_are_about():
    text = caveat(["上海市"], ["青禾市明川区", "青禾市明川区"])
    assert (
        text == "知识库中没有关于“上海市”的内容，本回答依据的是青禾市明川区的相关内容，仅供参考。"
    )


def test_an_answer_about_a_place_the_corpus_lacks_carries_the_caveat(assistant):
    answer = assistant.ask("上海市楼宇经济政策对租金补贴多少？")
    assert answer.refused or (
        answer.out_of_scope == ["上海市"] and answer.notice.startswith("知识库中没有关于“上海市”")
    )
    in_scope = assistant.ask("明川区楼宇经济政策对租金补贴多少？")
    assert not in_scope.refused and in_scope.out_of_scope == [] and in_scope.notice == ""


def test_an_amount_is_not_a_year():
    assert years("投资2000万元以上的项目有什么奖励？") == []
    assert years("2022-08-04 莱芜区") == ["2022"]
    assert uncovered("明川区投资2000万元以上的项目有什么奖励？", ["明川区"]) == []
    assert years("2022春节档票房冠军是哪部电影") == ["2022"]  # news questions drop the 年


def test_a_document_number_no_evidence_bears_is_uncovered():
    evidence = ["明川区人民政府令第 65 号", "人才公寓补贴每平方米每月30元。"]
    assert uncovered("第150号文件对人才公寓的补贴标准是多少？", evidence) == ["第150号"]
    assert uncovered("第65号令对人才公寓的补贴标准是多少？", evidence) == []
    assert uncovered("〔2023〕8号文件怎么补贴？", ["明政发〔2023〕7号"]) == ["〔2023〕8号"]
    assert uncovered("〔2023〕7号文件怎么补贴？", ["明政发〔2023〕7号"]) == []
    assert uncovered("人才公寓补贴标准是多少？", evidence) == []
    # 第…号 that names no document is not a document number.
    assert uncovered("地铁第3号线几点停运？", evidence) == []
    assert uncovered("第5号台风什么时候登陆？", evidence) == []
    assert uncovered("公告2020年第8号什么时候施行？", evidence) == ["2020年", "2020年第8号"]
    assert uncovered("沪府办[2023]5号文件怎么补贴？", ["沪府办〔2023〕5号"]) == []
    assert uncovered("第一百五十号令怎么规定？", ["政府令第150号"]) == []
    assert uncovered("第3号文化中心在哪？", evidence) == []


def test_a_question_about_a_document_never_indexed_is_refused_not_answered_from_another(
    assistant,
):
    """The knowledge base holds 明川区's policies, none numbered 第150号: their figures
    answer nothing about it, however close the topic."""
    answer = assistant.ask("明川区第150号文件对人才公寓的补贴标准是多少？")
    assert answer.refused and answer.citations == []
    assert answer.out_of_scope == ["第150号"]
