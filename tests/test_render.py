from rag.render import answer_markdown, escape_markdown, sources_html, sources_text

HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)">'


def answer(text, citations, refused=False):
    return {"question": "q", "answer": text, "refused": refused, "citations": citations}


def citation(n, text, quotes=(), title="标题", date="2024-01-01", source="来源"):
    return {
        "n": n,
        "doc_id": f"d{n}",
        "chunk_id": f"d{n}#0",
        "title": title,
        "date": date,
        "source": source,
        "text": text,
        "score": 1.0,
        "quotes": list(quotes),
    }


def test_markdown_escaping_shows_text_literally():
    assert escape_markdown("*强调* <b>1</b> [2]") == r"\*强调\* &lt;b&gt;1&lt;/b&gt; \[2\]"


def test_markers_become_links_to_their_source_and_stray_brackets_stay_text():
    md = answer_markdown(answer("补贴50%。[1]见[9]。", [citation(1, "补贴50%。")]))
    assert md == r"补贴50%。[\[1\]](#rag-src-1)见\[9\]。"


def test_the_readers_span_leads_in_bold_and_stays_escaped():
    text = "最高100万元：每家每年最高100万元。[1]"
    md = answer_markdown(
        {**answer(text, [citation(1, "每家每年最高100万元。")]), "span": "最高100万元"}
    )
    assert md.startswith("**最高100万元**：每家每年")
    hostile = answer_markdown({**answer(f"{HOSTILE}：x[1]", [citation(1, "x")]), "span": HOSTILE})
    assert "<script>" not in hostile and hostile.startswith("**&lt;script&gt;")


def test_hostile_answer_text_is_escaped_in_markdown():
    md = answer_markdown(answer(HOSTILE + "[1]", [citation(1, HOSTILE)]))
    assert "<script>" not in md and "<img" not in md and "&lt;script&gt;" in md


def test_sources_panel_escapes_everything_and_marks_quotes():
    html = sources_html(
        answer("x[1]", [citation(1, "前。" + HOSTILE + "后。", [HOSTILE + "后。"], title=HOSTILE)])
    )
    assert "<script>" not in html and "<img" not in html
    assert 'id="rag-src-1"' in html and "<mark>&lt;script&gt;" in html


def test_nothing_found_and_idle_states_differ():
    assert "rag-empty" in sources_html(answer("知识库中没有找到…", [], refused=True))
    assert "rag-idle" in sources_html(None)


def test_plain_text_source_list_for_chat_clients():
    text = sources_text(answer("x[1]", [citation(1, "t", title="飞地政策", source="明川区")]))
    assert text == "\n\n来源：\n[1] 飞地政策（2024-01-01，明川区）"
    assert sources_text(answer("拒答", [], refused=True)) == ""


def test_a_citation_shows_its_page_and_article():
    cited = {
        **citation(1, "第三条 奖励300万元。", title="数字经济措施"),
        "page": 2,
        "article": "第三条",
    }
    assert "2024-01-01 · 来源 · 第2页 · 第三条" in sources_html(answer("x[1]", [cited]))
    assert sources_text(answer("x[1]", [cited])).endswith(
        "数字经济措施（2024-01-01，来源，第2页，第三条）"
    )
    assert "页" not in sources_html(answer("x[1]", [{**cited, "page": None, "article": None}]))


def test_a_kept_original_is_linked_at_its_page_and_the_link_is_escaped():
    cited = {**citation(1, "t"), "doc_id": '政策/"a" <b>.pdf', "page": 2, "has_original": True}
    html = sources_html(answer("x[1]", [cited]))
    assert 'href="api/documents/%E6%94%BF%E7%AD%96/%22a%22%20%3Cb%3E.pdf/original#page=2"' in html
    assert ">原文第2页</a>" in html and "<b>" not in html
    assert "rag-source-original" not in sources_html(answer("x[1]", [citation(1, "t")]))


def test_related_clauses_are_escaped_and_collapsed_below_the_sources():
    shown = answer("补贴50%。[1]", [citation(1, "补贴50%。", ["补贴50%。"])])
    shown["related"] = [
        {"text": f"第二条 {HOSTILE}", "doc_id": "d2", "chunk_id": "d2#0", "title": "<b>办法</b>",
         "article": "第二条"},
    ]  # fmt: skip
    html = sources_html(shown)
    details = html[html.index("<details") :]
    assert details.startswith('<details class="rag-related">')  # not `open`: collapsed
    assert "<summary>相关条款（1）</summary>" in details
    assert "<script>" not in html and "<img" not in html and "<b>办法" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in details and "&lt;b&gt;办法" in details
    assert "<details" not in sources_html(answer("补贴50%。[1]", [citation(1, "补贴50%。")]))
