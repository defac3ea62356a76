"""Follow-up questions made standalone offline, and history in its plain forms."""

import pytest

from rag.history import format_history, leans_back, standalone_question, turns

FIRST = "莱芜区上半年实际使用外资多少？"


@pytest.mark.parametrize(
    "question",
    [
        "那欧美资金呢？",
        "制造业外资呢",
        "那么第二年呢？",
        "它的期限是多久？",
        "该办法什么时候施行？",
        "第二年？",
    ],
)
def test_elliptical_questions_lean_on_the_previous_one(question):
    assert leans_back(question)
    assert standalone_question([{"role": "user", "content": FIRST}], question) == (
        f"莱芜区上半年实际使用外资多少？{question}"
    )


@pytest.mark.parametrize(
    "question",
    [
        "明川区写字楼租金补贴第一年是多少？",
        "飞地项目的税收怎么分成？",
        "再生资源产业有什么补贴？",
        "这些年外资增长多少？",
        "其他区县的招商政策有哪些？",
    ],
)
def test_a_question_that_stands_alone_is_kept_as_it_is(question):
    assert not leans_back(question)
    assert standalone_question([{"role": "user", "content": FIRST}], question) == question


def test_follow_ups_lean_on_the_last_question_that_stood_alone():
    history = [
        {"role": "user", "content": "飞地项目的税收怎么分成？"},
        {"role": "assistant", "content": "按5:5分成[1]。"},
        {"role": "user", "content": FIRST},
        {"role": "assistant", "content": "3227万美元[1]。"},
        {"role": "user", "content": "那欧美资金呢？"},
        {"role": "assistant", "content": "3008万美元[1]。"},
    ]
    assert standalone_question(history, "制造业外资呢？") == (
        "莱芜区上半年实际使用外资多少？制造业外资呢？"
    )
    assert standalone_question([], "那欧美资金呢？") == "那欧美资金呢？"


def test_history_accepts_openai_and_gradio_message_shapes():
    history = [
        {"role": "system", "content": "你是助手"},
        {"role": "user", "content": [{"type": "text", "text": FIRST}]},
        {"role": "assistant", "content": "  3227万美元\n[1]。 "},
        {"role": "user", "content": ""},
        {"role": "tool", "content": "x"},
    ]
    assert turns(history) == [
        {"role": "user", "content": FIRST},
        {"role": "assistant", "content": "3227万美元 [1]。"},
    ]
    assert format_history(history) == f"用户：{FIRST}\n助手：3227万美元 [1]。"
