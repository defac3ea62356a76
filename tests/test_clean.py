from rag.clean import (
    clean,
    drop_repeated_paragraphs,
    normalize_whitespace,
    parse_news_header,
)
from rag.figures import iso_date
from tests.conftest import CORPUS

SEED = (CORPUS / "news" / "2022-08-04-laiwu-signing.txt").read_text("utf-8")


def test_full_width_spaces_crlf_and_blank_runs_are_normalised():
    raw = "第一条\u3000\u3000为了  促进发展。\r\n\r\n\r\n\r\n第二条\t适用范围。\r\n"
    assert normalize_whitespace(raw) == "第一条 为了 促进发展。\n\n第二条 适用范围。"


def test_iso_date_reads_chinese_and_dashed_dates():
    assert iso_date("2022-08-04 作者: 赵国陆") == "2022-08-04"
    assert iso_date("自2024年4月1日起施行") == "2024-04-01"
    assert iso_date("编号 20241301") == ""


def test_news_header_becomes_metadata():
    lines = normalize_whitespace(SEED).split("\n")
    meta, used = parse_news_header(lines)
    assert meta == {
        "title": "莱芜区集中签约23个“双招双引”项目",
        "date": "2022-08-04",
        "author": "赵国陆",
        "source": "大众日报",
        "doc_type": "news",
    }
    assert all("记 者" not in lines[i] or i in used for i in range(len(lines)))


def test_text_without_a_dateline_has_no_header():
    meta, used = parse_news_header(["关于印发办法的通知", "各街道办事处：", "现将办法印发给你们。"])
    assert meta == {} and used == set()


def test_repeated_paragraphs_are_kept_once_but_short_lines_may_repeat():
    paras = [
        "第一章 总则",
        "据悉，23个签约项目包括泰钢不锈钢终端市场产业园一期。",
        "第一章 总则",
        "据悉，23个签约项目包括泰钢不锈钢终端市场产业园一期。",
    ]
    assert drop_repeated_paragraphs(paras) == paras[:3]


def test_seed_article_body_appears_once_and_bylines_are_gone():
    cleaned = clean(SEED)
    assert cleaned.text.count("泰钢不锈钢终端市场产业园一期") == 1
    assert cleaned.text.count("3227万美元") == 1
    assert "记 者" not in cleaned.text and "通讯员" not in cleaned.text
    assert cleaned.text.startswith("本报济南讯")
    assert cleaned.meta["title"] == "莱芜区集中签约23个“双招双引”项目"


def test_a_long_paragraph_with_a_date_and_source_is_body_not_header():
    text = (
        "蒋雨楠 · 2023/01/25 16:08来源：界面新闻 摄影：范剑磊 三天票房突破40亿后，"
        "2023年春节档七部新片票房也排位逐渐明朗。虽然档期已经过半，但各片走势仍有变数，"
        "业内人士认为，口碑将决定后半程的票房格局，观众的选择也越来越理性。"
    )
    cleaned = clean(text)
    assert cleaned.text == text
    assert "title" not in cleaned.meta


def test_a_sentence_starting_with_reporter_is_body_not_byline():
    text = "莱芜区签约23个项目\n2022-08-04 来源: 大众日报\n□记 者 赵国陆\n通讯员 董萃萃 报道\n记者从区商务局获悉，上半年全区新签约项目12个。"
    cleaned = clean(text)
    assert cleaned.text == "记者从区商务局获悉，上半年全区新签约项目12个。"
