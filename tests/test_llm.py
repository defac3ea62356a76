"""Generative answers through an OpenAI-compatible endpoint, checked for grounding.

No hosted LLM can run here: these tests start a local server that speaks the OpenAI chat
protocol over real HTTP with streamed SSE (tests/llm_server.py) and script its replies.
Retrieval, the index and the embedding model are the real ones over the shipped corpus.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time

import pytest

from rag.api import create_app
from rag.chain import build_assistant
from rag.config import Settings
from rag.llm import FALLBACK_NOTICE, UNCITED_NOTICE, PromptError, load_prompts
from tests.conftest import REPO, free_port, run_rag, serving, sse_events, streamed_text
from tests.llm_server import LLMServer, Reply, cite, passages

QUESTION = "莱芜区上半年实际使用外资多少？"


@pytest.fixture(scope="module")
def llm():
    with LLMServer() as server:
        yield server


@pytest.fixture
def make_assistant(llm, corpus_index):
    def make(timeout: float = 20.0):
        settings = Settings(
            llm_base_url=llm.base_url,
            llm_model="qwen-test",
            llm_timeout=timeout,
            prompts_dir=REPO / "prompts",
        )
        return build_assistant(settings, corpus_index)

    llm.requests.clear()
    return make


def markers(text: str) -> set[int]:
    return {int(n) for n in re.findall(r"\[(\d+)\]", text)}


def test_answer_streams_and_cites_the_passages_the_model_used(llm, make_assistant):
    def reply(messages):
        n = cite(messages, "3227万美元")
        return Reply(f"莱芜区上半年实际使用外资3227万美元[{n}]，同比增长88.6%[{n}]。")

    llm.reply = reply
    items = list(make_assistant().stream(QUESTION))
    *pieces, answer = items
    assert len(pieces) > 3 and all(isinstance(p, str) for p in pieces)  # it streamed
    assert "".join(pieces) == answer.answer
    assert "3227万美元" in answer.answer and answer.unverified == []
    assert not answer.refused and not answer.notice
    assert markers(answer.answer) == {c.n for c in answer.citations}
    assert answer.citations[0].doc_id == "news/2022-08-04-laiwu-signing.txt"
    assert any("3227万美元" in quote for quote in answer.citations[0].quotes)
    # The prompt: system rules, then the numbered passages and the question.
    request = llm.requests[-1]
    assert request["stream"] is True and request["model"] == "qwen-test"
    assert request["messages"][0]["role"] == "system"
    assert "只依据" in request["messages"][0]["content"]
    assert len(passages(request["messages"])) == 5
    assert request["messages"][-1]["content"].rstrip().endswith("标注资料编号 [n]。")


def test_a_figure_no_cited_passage_contains_is_listed_as_unverified(llm, make_assistant):
    def reply(messages):
        n = cite(messages, "3227万美元")
        return Reply(
            f"上半年实际使用外资3227万美元[{n}]。其中欧美资金占比达到95%[{n}]。"
            f"全年目标为5000万美元。"
        )

    llm.reply = reply
    answer = make_assistant().ask(QUESTION)
    assert answer.unverified == ["其中欧美资金占比达到95%。", "全年目标为5000万美元。"]
    assert "3227万美元" in answer.answer and not answer.refused
    assert answer.to_json()["unverified"] == answer.unverified


def test_a_marker_naming_no_passage_is_removed(llm, make_assistant):
    llm.reply = lambda messages: Reply(
        f"实际使用外资3227万美元[{cite(messages, '3227万美元')}]。同比增长88.6%[9]。"
    )
    answer = make_assistant().ask(QUESTION, k=3)
    assert len(passages(llm.requests[-1]["messages"])) == 3
    assert "[9]" not in answer.answer and "同比增长88.6%。" in answer.answer
    assert markers(answer.answer) == {c.n for c in answer.citations} <= {1, 2, 3}
    # The sentence lost its only citation, so its figure is no longer backed by anything.
    assert answer.unverified == ["同比增长88.6%。"]


def test_an_answer_saying_the_material_does_not_cover_it_is_a_refusal(llm, make_assistant):
    llm.reply = lambda messages: Reply("提供的资料中没有提及该地区的土地出让价格。")
    answer = make_assistant().ask("明川区工业用地出让底价是每亩多少钱？")
    assert answer.refused and answer.citations == []
    assert answer.answer == load_prompts(REPO / "prompts").no_answer


@pytest.mark.parametrize(
    "failure",
    [Reply(delay=3.0), Reply(status=500), Reply("上半年" * 40, piece_delay=0.1), Reply("")],
    ids=["timeout", "500", "too-slow-in-all", "empty"],
)
def test_on_llm_failure_the_extractive_answer_comes_back_with_a_notice(
    llm, make_assistant, failure, caplog
):
    llm.reply = lambda messages: failure
    assistant = make_assistant(timeout=1.0)
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="rag.llm"):
        answer = assistant.ask(QUESTION)
    (logged,) = [r.getMessage() for r in caplog.records if r.name == "rag.llm"]
    assert logged.startswith("llm fallback to extractive answer: ") and answer.fallback in logged
    if failure.delay or failure.piece_delay:  # it gave up, long before the server was done
        assert time.perf_counter() - started < 3.0
    assert answer.notice == FALLBACK_NOTICE and not answer.refused
    assert "3227万美元" in answer.answer and answer.citations
    assert len(llm.requests) == 1  # no retries: the user is waiting


@pytest.mark.parametrize(
    "reply", ["[1][2]", "上半年实际使用外资3227万美元，同比增长88.6%。"], ids=["markers", "none"]
)
def test_an_answer_citing_nothing_is_not_given(llm, make_assistant, reply):
    llm.reply = lambda messages: Reply(reply)
    answer = make_assistant().ask(QUESTION)
    assert answer.notice == UNCITED_NOTICE and answer.citations and not answer.refused
    assert answer.answer != reply and "3227万美元" in answer.answer  # the extractive one


def test_a_not_covered_answer_with_a_marker_is_still_a_refusal(llm, make_assistant):
    llm.reply = lambda messages: Reply("资料中没有提及该地区的土地出让价格[1]。")
    answer = make_assistant().ask("明川区工业用地出让底价是每亩多少钱？")
    assert answer.refused and answer.citations == [] and not answer.notice


@pytest.mark.parametrize(
    ("condensed", "expected"),
    [
        (
            "<think>用户在问欧美资金。</think>\n改写后的问题：“莱芜区上半年实际使用欧美资金多少？”",
            "莱芜区上半年实际使用欧美资金多少？",
        ),
        ("", "莱芜区上半年实际使用外资多少？那欧美资金呢？"),  # unusable: the offline rule
        ("莱" * 500, "莱芜区上半年实际使用外资多少？那欧美资金呢？"),
    ],
    ids=["wrapped", "empty", "runaway"],
)
def test_the_models_rewrite_is_cleaned_or_replaced(llm, make_assistant, condensed, expected):
    def reply(messages):
        if "改写后的问题" in messages[-1]["content"]:
            return Reply(condensed)
        return Reply(f"实际使用欧美资金3008万美元[{cite(messages, '3008万美元')}]。")

    llm.reply = reply
    history = [{"role": "user", "content": QUESTION}]
    answer = make_assistant().ask("那欧美资金呢？", history=history)
    assert answer.standalone_question == expected


def test_a_follow_up_is_condensed_by_the_model_before_retrieval(llm, make_assistant):
    """“那欧美资金呢？” after a question about 外资: the model rewrites it, retrieval uses
    the rewrite, and the answer is about 欧美资金 in the same place and period."""

    def reply(messages):
        prompt = messages[-1]["content"]
        if "改写后的问题" in prompt:
            return Reply("莱芜区上半年实际使用欧美资金多少？")
        return Reply(f"莱芜区上半年实际使用欧美资金3008万美元[{cite(messages, '3008万美元')}]。")

    llm.reply = reply
    history = [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": "莱芜区上半年实际使用外资3227万美元[1]。"},
    ]
    answer = make_assistant().ask("那欧美资金呢？", history=history)
    condense, answer_request = llm.requests
    assert QUESTION in condense["messages"][-1]["content"]
    assert "用户：" in condense["messages"][-1]["content"]
    assert "问题：莱芜区上半年实际使用欧美资金多少？" in answer_request["messages"][-1]["content"]
    assert answer.standalone_question == "莱芜区上半年实际使用欧美资金多少？"
    assert answer.question == "那欧美资金呢？"
    assert "3008万美元" in answer.answer and answer.unverified == []


def test_without_a_base_url_nothing_talks_to_an_llm(assistant):
    assert type(assistant.answerer).__name__ == "ReadingAnswerer"  # local: the reading model


def test_prompt_templates_are_checked_at_start(tmp_path):
    folder = tmp_path / "prompts"
    shutil.copytree(REPO / "prompts", folder)
    prompts = load_prompts(folder)
    assert "{refusal}" in prompts.system and prompts.no_answer.startswith("知识库中没有")
    (folder / "answer.txt").write_text("只有问题：{question}", "utf-8")
    with pytest.raises(
        PromptError, match=r"answer.txt must use the placeholder\(s\) \['passages'\]"
    ):
        load_prompts(folder)
    (folder / "answer.txt").write_text("{passages}{question}{user}", "utf-8")
    with pytest.raises(PromptError, match="unknown placeholder"):
        load_prompts(folder)
    (folder / "answer.txt").write_text("{passages}{question}{}", "utf-8")
    with pytest.raises(PromptError, match="not a valid template"):
        load_prompts(folder)
    (folder / "answer.txt").unlink()
    with pytest.raises(PromptError, match="cannot read prompt"):
        load_prompts(folder)


def test_a_reply_cut_off_mid_stream_ends_in_the_extractive_answer(llm, make_assistant):
    llm.reply = lambda messages: Reply("上半年实际使用外资3227万美元[1]。", drop_after=4)
    *pieces, answer = make_assistant().stream(QUESTION)
    assert pieces  # some of the model's text had already been shown
    assert answer.notice == FALLBACK_NOTICE and "3227万美元" in answer.answer


@pytest.fixture
def llm_api(make_assistant):
    assistant = make_assistant(timeout=1.0)
    with serving(create_app(lambda: assistant)) as client:
        yield client


def test_multi_turn_conversation_through_the_api(llm, llm_api):
    """The closing note's example: /api/ask with history, the model behind it local."""

    def reply(messages):
        prompt = messages[-1]["content"]
        if "改写后的问题" in prompt:
            return Reply("莱芜区上半年实际使用欧美资金多少？")
        n = cite(messages, "3008万美元")
        return Reply(f"莱芜区上半年实际使用欧美资金3008万美元[{n}]，完成目标任务的2426%[{n}]。")

    llm.reply = reply
    first = llm_api.post("/api/ask", json={"question": QUESTION}).json()
    history = [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": first["answer"]},
    ]
    r = llm_api.post("/api/ask", json={"question": "那欧美资金呢？", "history": history})
    assert r.status_code == 200
    body = r.json()
    assert body["standalone_question"] == "莱芜区上半年实际使用欧美资金多少？"
    assert "3008万美元" in body["answer"] and body["unverified"] == [] and not body["refused"]
    assert markers(body["answer"]) == {c["n"] for c in body["citations"]}
    assert body["timings_ms"]["condense_ms"] > 0
    print(json.dumps(body, ensure_ascii=False, indent=1))


def test_chat_completions_stream_the_models_text_as_it_arrives(llm, llm_api):
    llm.reply = lambda messages: Reply(
        f"实际使用外资3227万美元[{cite(messages, '3227万美元')}]。同比增长99%[9]。"
    )
    request = {"stream": True, "messages": [{"role": "user", "content": QUESTION}]}
    chunks = sse_events(llm_api, request)
    text = streamed_text(chunks)
    assert text.startswith("实际使用外资3227万美元[") and "[9]" not in text
    assert "来源：" in text  # the plain-text source list follows the model's words
    assert "未能在所引资料中核实" in text and "- 同比增长99%。" in text
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == "stop" and last["unverified"] == ["同比增长99%。"]
    assert markers(text.split("来源：")[0]) == {c["n"] for c in last["citations"]}


def test_chat_completions_never_hang_on_a_dead_model(llm, llm_api):
    llm.reply = lambda messages: Reply(delay=3.0)
    request = {"stream": True, "messages": [{"role": "user", "content": QUESTION}]}
    chunks = sse_events(llm_api, request)
    assert streamed_text(chunks).startswith(FALLBACK_NOTICE)
    assert chunks[-1]["notice"] == FALLBACK_NOTICE and "3227万美元" in streamed_text(chunks)


def test_a_broken_prompt_stops_rag_serve_with_a_clear_message(tmp_path):
    folder = tmp_path / "prompts"
    shutil.copytree(REPO / "prompts", folder)
    (folder / "system.txt").write_text("只依据资料回答。", "utf-8")
    env = {"RAG_LLM_BASE_URL": "http://127.0.0.1:9/v1", "RAG_PROMPTS_DIR": str(folder)}
    result = run_rag("serve", "--port", str(free_port()), env=env, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "system.txt must use the placeholder(s) ['max_chars', 'refusal']" in result.stderr
