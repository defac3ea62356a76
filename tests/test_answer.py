"""The extractive answerer: pure functions, Chinese examples inline."""

import re

from rag.answer import (
    REFUSAL,
    AnswerType,
    Candidate,
    ExtractiveAnswerer,
    answer_type,
    compose,
    coverage,
    document_names,
    named_document,
    related,
    select,
    typed_values,
    wants_attribution,
)
from rag.lexical import bigram_tokens
from rag.split import sentence_spans
from rag.types import Chunk, Hit


def hit(
    doc_id: str, text: str, sims: list[float] | None = None, score: float = 1.0, **meta: str
) -> Hit:
    spans = tuple((s.start, s.end) for s in sentence_spans(text))
    sims = sims or [0.9] * len(spans)
    chunk = Chunk(
        f"{doc_id}#0",
        doc_id,
        0,
        text,
        0,
        len(text),
        {"title": doc_id, "date": "2024-01-01", "source": "测试", **meta},
    )
    return Hit(
        chunk, score, dense_score=max(sims), sentence_spans=spans, sentence_scores=tuple(sims)
    )


def flat_idf(_token: str) -> float:
    return 1.0


def test_question_words_give_the_expected_answer_type():
    assert answer_type("莱芜区上半年实际使用外资多少？") is AnswerType.NUMBER
    assert answer_type("飞地经济政策什么时候开始施行？") is AnswerType.DATE
    assert answer_type("谁负责重大项目的协调？") is AnswerType.OTHER


def test_typed_values_are_the_new_figures_a_sentence_offers():
    values = typed_values(
        "上半年,全区实际使用外资3227万美元,同比增长88.6%。", "上半年实际使用外资多少？"
    )
    assert values[AnswerType.NUMBER] == {"3227万美元", "88.6%"}
    dates = typed_values("本办法自2024年4月1日起施行，有效期三年。", "什么时候施行")
    assert dates[AnswerType.DATE] == {"2024年4月1日"}


def test_coverage_weights_rare_words():
    idf = {"外资": 5.0, "多少": 0.1}.get
    q = {"外资", "多少"}
    assert coverage(q, {"外资"}, lambda t: idf(t, 1.0)) > 0.95
    assert coverage(q, {"多少"}, lambda t: idf(t, 1.0)) < 0.05


def test_every_sentence_carries_the_number_of_its_passage_and_citations_follow_first_use():
    hits = [
        hit("a", "第一条 首年租金补贴50%。第二条 第二年补贴30%。", [0.80, 0.95]),
        hit("b", "飞地园区厂房租金补贴40%。", [0.85]),
    ]
    answer = ExtractiveAnswerer(flat_idf, relative_cutoff=1.0).answer("补贴多少？", hits, k=2)
    markers = [int(n) for n in re.findall(r"\[(\d+)\]", answer.answer)]
    assert markers and {c.n for c in answer.citations} == set(markers)
    assert [c.n for c in answer.citations] == sorted(set(markers), key=markers.index)
    assert re.fullmatch(r"(?:[^\[\]]+\[\d+\])+", answer.answer)  # each sentence ends with [n]
    # the best passage (a) comes first, led by its best sentence (0.95), then the rest of it
    assert answer.answer.startswith("第二条 第二年补贴30%。[1]第一条 首年租金补贴50%。[1]")
    assert answer.citations[0].doc_id == "a"


def test_only_used_passages_are_cited_and_later_hits_only_corroborate():
    hits = [hit("a", "外资到账3227万美元。"), hit("b", "无关的天气预报内容很长。", [0.1])]
    answer = ExtractiveAnswerer(flat_idf).answer("到账外资多少？", hits, k=1)
    assert [c.doc_id for c in answer.citations] == ["a"]


def test_length_budget_is_respected():
    text = "。".join(f"第{i}条 企业可申请奖励{i}0万元" for i in range(1, 30)) + "。"
    answer = ExtractiveAnswerer(flat_idf, max_chars=60, relative_cutoff=9).answer(
        "奖励多少？", [hit("a", text)], k=1
    )
    assert len(re.sub(r"\[\d+\]", "", answer.answer)) <= 60


def test_selection_skips_a_sentence_that_repeats_one_already_chosen():
    same = {"外资", "资到", "到账"}
    cands = [
        Candidate(0, 0, 8, "外资到账3227万美元。", same | {"3227"}, same, 0.9, 1.0, 1.0),
        Candidate(1, 0, 8, "外资到账3227万美元！", same | {"3227"}, same, 0.9, 1.0, 0.99),
        Candidate(2, 0, 8, "欧美资金3008万美元。", {"欧美", "资金"}, set(), 0.8, 0.5, 0.95),
    ]
    chosen = select(cands, max_chars=300, relative_cutoff=0.2, redundancy=0.5)
    assert [c.hit for c in chosen] == [0, 2]


def test_weak_evidence_is_refused_with_no_citations():
    hits = [hit("a", "今天的足球比赛很精彩。", [0.70])]
    answer = ExtractiveAnswerer(flat_idf, refusal_threshold=0.9).answer("外资奖励多少？", hits, k=1)
    assert answer.refused and answer.answer == REFUSAL and answer.citations == []


def test_no_passages_is_a_refusal():
    answer = ExtractiveAnswerer(flat_idf).answer("外资奖励多少？", [], k=5)
    assert answer.refused


def test_compose_quotes_are_the_sentences_used():
    h = hit("a", "第一条 补贴50%。第二条 补贴30%。")
    chosen = [Candidate(0, 10, 19, "第二条 补贴30%。", set(), set(), 0.9, 1.0, 1.0)]
    answer = compose("补贴多少", [h], chosen)
    assert answer.citations[0].quotes == ("第二条 补贴30%。",)
    assert answer.citations[0].text == h.chunk.text


def test_a_second_passage_that_covers_the_rest_of_the_question_is_added():
    """ "A和B分别…": the sentence about B is lower in score but covers what A's did not."""
    question = "飞地政策和楼宇政策的申报截止日期分别是哪天？"
    q = set(bigram_tokens(question))
    enclave = {"飞地", "政策", "申报", "截止"}
    building = {"楼宇", "政策", "申报"}
    cands = [
        Candidate(0, 0, 9, "每年3月31日前申报。", {"3月"}, enclave, 0.9, 0.5, 1.0),
        Candidate(0, 9, 20, "本政策由投资促进局解释。", {"解释"}, enclave, 0.9, 0.3, 0.95),
        Candidate(1, 0, 9, "每年4月30日前申报。", {"4月"}, building, 0.85, 0.4, 0.85),
    ]

    def idf(token):
        return 5.0 if token in ("飞地", "楼宇") else 0.1

    without_gain = select(cands, 300, 0.1, 0.5, q, idf, coverage_gain=0.0)
    with_gain = select(cands, 300, 0.1, 0.5, q, idf, coverage_gain=0.5)
    assert "每年4月30日前申报。" not in [c.text for c in without_gain]
    assert [c.text for c in with_gain][:2] == ["每年3月31日前申报。", "每年4月30日前申报。"]


def test_a_split_question_quotes_each_part_from_its_own_hits_in_their_order():
    enclave = hit("enclave", "飞地奖补每年3月31日前申报。飞地奖补资金由财政局拨付。", [0.9, 0.9])
    building = hit(
        "building", "楼宇扶持每年4月30日前申报。楼宇扶持资金由商务局拨付。", [0.95, 0.95]
    )
    parts = [("飞地奖补哪天前申报？", [enclave]), ("楼宇扶持哪天前申报？", [building])]
    # Each part may quote both of its sentences (14 characters each) within 60 characters,
    # but only one within its half of 40.
    roomy = ExtractiveAnswerer(flat_idf, max_chars=60, relative_cutoff=1.0)
    both = roomy.answer_parts("飞地和楼宇分别哪天前申报？", parts, [enclave, building], k=2)
    assert [len(c.quotes) for c in both.citations] == [2, 2]
    tight = ExtractiveAnswerer(flat_idf, max_chars=40, relative_cutoff=1.0)
    answer = tight.answer_parts("飞地和楼宇分别哪天前申报？", parts, [enclave, building], k=2)
    assert [len(c.quotes) for c in answer.citations] == [1, 1]
    assert "3月31日" in answer.answer and "4月30日" in answer.answer
    # the parts' order, although the building sentences score higher
    assert [c.doc_id for c in answer.citations] == ["enclave", "building"]
    assert answer.notice == ""


def test_each_part_of_a_split_question_reads_k_passages_as_if_asked_alone():
    """Clauses of one policy tie in retrieval: a part's answer may be its k-th passage."""
    parts = [
        (
            "飞地奖补哪天前申报？",
            [hit("e1", "飞地奖补按季度申报。"), hit("e2", "飞地奖补3月31日前申报。")],
        ),
        (
            "楼宇扶持哪天前申报？",
            [hit("b1", "楼宇扶持按年度申报。"), hit("b2", "楼宇扶持4月30日前申报。")],
        ),
    ]
    merged = [h for _, hits in parts for h in hits]
    answerer = ExtractiveAnswerer(flat_idf, max_chars=40, relative_cutoff=1.0)
    answer = answerer.answer_parts("飞地和楼宇分别哪天前申报？", parts, merged, k=2)
    assert "3月31日" in answer.answer and "4月30日" in answer.answer
    assert {c.doc_id for c in answer.citations} == {"e2", "b2"}


def test_a_split_question_is_refused_only_when_every_part_is():
    football = hit("a", "今天的足球比赛很精彩。", [0.70])
    answerer = ExtractiveAnswerer(flat_idf, refusal_threshold=0.9)
    weak = [("足球哪天？", [football]), ("篮球哪天？", [football])]
    assert answerer.answer_parts("足球和篮球分别哪天？", weak, [football], k=1).refused
    enclave = hit("enclave", "飞地奖补每年3月31日前申报。", [0.95])
    mixed = [("飞地奖补哪天前申报？", [enclave]), ("足球哪天？", [football])]
    answer = answerer.answer_parts("飞地和足球分别哪天？", mixed, [enclave, football], k=1)
    assert not answer.refused and [c.doc_id for c in answer.citations] == ["enclave"]
    assert answer.notice == "知识库中没有找到与“足球哪天？”相关的内容。"


def test_which_document_questions_are_answered_with_the_title():
    assert wants_attribution("给外资企业配服务管家出自哪份政策？")
    assert wants_attribution("这条规定在哪份文件里？")
    assert wants_attribution("大众日报关于莱芜区签约的报道是哪天刊发的？")
    assert not wants_attribution("莱芜区上半年实际使用外资多少？")
    hits = [hit("policies/x.md", "第十八条 建立外资项目服务管家制度。")]
    answer = ExtractiveAnswerer(flat_idf).answer("服务管家出自哪份政策？", hits, k=1)
    assert (
        answer.answer
        == "据《policies/x.md》（测试，2024-01-01）：第十八条 建立外资项目服务管家制度。[1]"
    )


def test_a_bracketed_number_in_a_source_does_not_become_a_citation_marker():
    hits = [hit("a", "根据《办法》[2]规定，首年补贴50%。")]
    answer = ExtractiveAnswerer(flat_idf).answer("首年补贴多少？", hits, k=1)
    assert re.findall(r"\[(\d+)\]", answer.answer) == ["1"]
    assert "［2］" in answer.answer and answer.citations[0].quotes == (
        "根据《办法》[2]规定，首年补贴50%。",
    )


def test_a_sentence_longer_than_the_budget_is_quoted_from_its_start_verbatim():
    text = "第一条" + "，".join(f"企业可以申请第{i}项奖励" for i in range(20)) + "。"
    h = hit("a", text)
    answer = ExtractiveAnswerer(flat_idf, max_chars=40).answer("奖励有哪些？", [h], k=1)
    quote = answer.citations[0].quotes[0]
    assert len(quote) == 40 and quote in h.chunk.text


def test_document_form_and_notices_are_never_quoted():
    """Headings, the document number, the addressee line and the document's own notice
    share the question's words through the title, but answer nothing."""
    notice = "本文件为示例文本，所述地区与机构均为虚构。"
    text = (
        f"【示例文本】{notice}\n明投促发〔2025〕3号\n各街道办事处，区直有关部门，各园区管委会：\n"
        "第二章 奖励标准\n第七条 外资来源为欧美资金的，奖励比例提高0.5个百分点。"
    )
    passage = hit("明川区鼓励外商投资奖励办法", text, notice=notice)
    answer = ExtractiveAnswerer(flat_idf, max_chars=300).answer(
        "明川区鼓励外商投资奖励办法对欧美资金有什么额外奖励？", [passage], 5
    )
    assert answer.answer == "第七条 外资来源为欧美资金的，奖励比例提高0.5个百分点。[1]"


BUILDING = "明川区支持楼宇经济高质量发展的实施办法"
ENCLAVE = "明川区促进飞地经济发展的若干政策"


def test_a_question_refers_to_a_document_by_a_name_before_a_document_noun():
    assert document_names("明川区楼宇经济政策什么时候开始施行？") == ["明川区楼宇经济"]
    assert document_names("飞地政策和外资奖励办法分别多少天审完？") == ["飞地", "外资奖励"]
    assert document_names("天津市应急管理局采取了什么措施？") == []  # a question word, no name


def corpus_idf(token: str) -> float:
    """As in a corpus of 明川区 policies: the words of every title are common."""
    return 0.1 if token in {"明川", "川区", "经济", "发展"} else 1.0


def test_the_named_document_is_the_one_whose_title_holds_the_name():
    building = hit("building", "本办法自2023年7月1日起施行。", title=BUILDING)
    enclave = hit("enclave", "本政策自2024年4月1日起施行。", title=ENCLAVE)
    hits = [enclave, building]
    assert named_document("明川区楼宇经济政策什么时候开始施行？", hits, corpus_idf) == "building"
    assert named_document("飞地政策什么时候开始施行？", hits, corpus_idf) == "enclave"
    # 明川区 and 经济 are in both titles; 优惠 is a kind of policy, not a name.
    assert named_document("明川区经济政策什么时候施行？", hits, corpus_idf) is None
    assert named_document("有哪些优惠政策？", hits, corpus_idf) is None
    # Two names compare two documents: neither is "the" one.
    assert named_document("飞地政策和楼宇经济政策分别什么时候施行？", hits, corpus_idf) is None
    untitled = hit("news", "本政策自2024年4月1日起施行。", title="")
    assert named_document("飞地政策什么时候开始施行？", [enclave, untitled], corpus_idf) is None


def test_a_question_naming_one_policy_is_not_answered_from_another():
    """The 飞地 sentence is closer to the question, but the question names the 楼宇 policy."""
    enclave = hit("enclave", "本政策自2024年4月1日起施行。", [0.95], title=ENCLAVE)
    building = hit("building", "本办法自2023年7月1日起施行。", [0.90], title=BUILDING)
    answerer = ExtractiveAnswerer(flat_idf, relative_cutoff=1.0)
    answer = answerer.answer("楼宇经济政策什么时候开始施行？", [enclave, building], k=2)
    assert answer.answer.startswith("本办法自2023年7月1日起施行。")
    assert [c.doc_id for c in answer.citations] == ["building"]


def test_a_signature_date_answers_when_a_document_was_issued_and_nothing_else():
    signed = hit("building", "本办法自2023年7月1日起施行。\n2023年6月20日", [0.9, 0.95])
    answerer = ExtractiveAnswerer(flat_idf, relative_cutoff=1.0)
    started = answerer.answer("楼宇政策什么时候开始施行？", [signed], k=1)
    assert "2023年6月20日" not in started.answer and "2023年7月1日" in started.answer
    issued = answerer.answer("楼宇政策是什么时间发布的？", [signed], k=1)
    assert "2023年6月20日" in issued.answer


def test_related_clauses_are_the_relevant_sentences_the_answer_left_out():
    """相关条款: best first, within the cutoff of the best, never one the answer quotes or
    one that restates a sentence already shown."""
    rent = {"租金", "金补", "补贴"}
    cands = [
        Candidate(0, 0, 9, "第一年租金补贴50%。", rent | {"50"}, rent, 0.9, 1.0, 1.0),
        Candidate(0, 9, 18, "第二年租金补贴30%。", rent | {"30"}, rent, 0.9, 1.0, 0.95),
        Candidate(1, 0, 9, "第一年租金补贴50%！", rent | {"50"}, rent, 0.9, 1.0, 0.94),
        Candidate(1, 9, 20, "补贴资金由区财政列支。", {"补贴", "资金"}, set(), 0.8, 0.5, 0.9),
        Candidate(2, 0, 9, "楼宇业主另有奖励。", {"楼宇"}, set(), 0.5, 0.1, 0.6),
    ]
    shown = cands[:1]
    assert [c.text for c in related(cands, shown, 0.2)] == [
        "第二年租金补贴30%。",
        "补贴资金由区财政列支。",
    ]
    assert [c.text for c in related(cands, shown, 0.2, limit=1)] == ["第二年租金补贴30%。"]
    assert related(cands, [], 0.2) == []  # a refusal offers nothing


def test_an_answer_over_its_budget_offers_the_rest_as_related_clauses():
    text = (
        "第一条 新入驻企业第一年可申请租金奖励，按实际租金的50%给予。"
        "第二条 第二年租金奖励按30%给予，最高100万元。"
        "第三条 总部企业购置自用办公用房的，按每平方米1000元给予奖励。"
        "第四条 楼宇业主引进企业的，按新增税收的5%给予业主奖励。"
        "第五条 奖励资金由区财政统筹安排，企业租金奖励每年申报一次。"
    )
    hits = [hit("policy", text)]
    answer = ExtractiveAnswerer(flat_idf, max_chars=60, relative_cutoff=9).answer(
        "入驻企业租金奖励多少？", hits, k=1
    )
    assert answer.related and len(answer.related) <= 3
    for clause in answer.related:
        assert clause.text not in answer.answer and clause.text in text
        assert clause.doc_id == "policy" and clause.chunk_id == "policy#0"
    assert answer.to_json()["related"][0]["text"] == answer.related[0].text
