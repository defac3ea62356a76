"""The whole chain over the shipped corpus, in-process and through `rag ask`."""

import json
import re
from pathlib import Path

import pytest

from rag.chain import QuestionError
from rag.evaluate import load_questions
from rag.split import split_sentences
from tests.conftest import CORPUS, run_rag

PROJECT_SET = Path(__file__).resolve().parents[1] / "evals" / "project.jsonl"


def test_every_marker_in_every_answer_refers_to_a_returned_citation(assistant):
    for q in load_questions(PROJECT_SET):
        answer = assistant.ask(q.question)
        markers = {int(n) for n in re.findall(r"\[(\d+)\]", answer.answer)}
        numbers = [c.n for c in answer.citations]
        assert markers == set(numbers), q.id
        assert numbers == list(range(1, len(numbers) + 1)), q.id
        for c in answer.citations:
            assert all(quote in c.text for quote in c.quotes), q.id
        if answer.refused:
            assert answer.citations == [], q.id


def test_a_comparison_is_answered_from_both_documents(assistant):
    """Asked as one question, the vector lands between the two policies and only one
    figure is quoted; split, each policy answers its half."""
    answer = assistant.ask("外资到资奖励和飞地项目奖补的申报截止日期分别是什么时候？")
    assert "2月28日" in answer.answer and "3月31日" in answer.answer
    assert {c.doc_id for c in answer.citations} >= {
        "policies/foreign-investment-awards.md",
        "policies/enclave-economy.md",
    }
    assert assistant.ask("红烧肉和糖醋排骨分别怎么做？").refused


@pytest.mark.parametrize(
    ("question", "problem"),
    [("", "empty"), ("   \n ", "empty"), ("外资" * 400, "limit is 500")],
)
def test_empty_and_huge_questions_are_rejected(assistant, question, problem):
    with pytest.raises(QuestionError, match=problem):
        assistant.ask(question)


def test_rag_ask_json_answers_the_seed_figure_and_cites_the_seed(tmp_path, e5_dir):
    env = {"RAG_EMBEDDING_MODEL": str(e5_dir), "RAG_CORPUS_DIR": str(CORPUS)}
    assert run_rag("ingest", env=env).returncode == 0
    result = run_rag("ask", "--json", "莱芜区上半年实际使用外资多少？", env=env)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert set(answer) == {
        *("question", "answer", "refused", "citations", "timings_ms"),  # DESIGN.md's
        *("standalone_question", "unverified", "notice"),  # conversations and LLM answers
        "out_of_scope",  # places and years asked about that no cited document mentions
        "generation",  # the index generation every citation comes from
        "related",  # 相关条款: relevant clauses the answer left out
        *("span", "confidence"),  # the reading model's span, and how sure it is
    }
    assert "3227万美元" in answer["answer"] and not answer["refused"]
    cited = {c["n"]: c for c in answer["citations"]}
    first = int(re.search(r"3227万美元[^\[]*\[(\d+)\]", answer["answer"]).group(1))
    assert cited[first]["doc_id"] == "news/2022-08-04-laiwu-signing.txt"
    assert set(cited[first]) >= {
        "n",
        "doc_id",
        "chunk_id",
        "title",
        "date",
        "source",
        "text",
        "score",
    }

    human = run_rag("ask", "莱芜区上半年实际使用外资多少？", env=env)
    assert human.returncode == 0
    assert (
        "来源" in human.stdout
        and "莱芜区集中签约23个“双招双引”项目（2022-08-04，大众日报）" in human.stdout
    )

    # A follow-up with --history keeps the subject of the conversation.
    history = tmp_path / "turns.json"
    turns = [
        {"role": "user", "content": "莱芜区上半年实际使用外资多少？"},
        {"role": "assistant", "content": answer["answer"]},
    ]
    history.write_text(json.dumps(turns, ensure_ascii=False), "utf-8")
    follow_up = run_rag("ask", "--json", "--history", str(history), "那欧美资金呢？", env=env)
    assert follow_up.returncode == 0, follow_up.stderr
    assert "3008万美元" in json.loads(follow_up.stdout)["answer"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"role": "user"}', "must hold a JSON list"),
        (b'[{"role": "user", "content": 3}]', "must hold a JSON list"),
        (b"[{oops", "is not UTF-8 JSON"),
        ("[]".encode("utf-16"), "is not UTF-8 JSON"),
    ],
)
def test_a_bad_history_file_is_a_clear_error(tmp_path, content, message):
    history = tmp_path / "turns.json"
    history.write_bytes(content)
    result = run_rag("ask", "--history", str(history), "那欧美资金呢？")
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr
    missing = run_rag("ask", "--history", str(tmp_path / "nope.json"), "外资")
    assert missing.returncode == 2 and "cannot read" in missing.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ask", ""], "the question is empty"),
        (["ask", "外资", "--since", "2024/13/01"], "--since needs a date"),
        (["ask", "外资", "--k", "0"], "k must be between 1 and 50"),
    ],
)
def test_rag_ask_rejects_bad_input_with_a_clear_message(args, message, e5_dir):
    result = run_rag(*args, env={"RAG_EMBEDDING_MODEL": str(e5_dir), "RAG_CORPUS_DIR": str(CORPUS)})
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_rag_ask_on_an_empty_index_says_to_ingest(e5_dir):
    result = run_rag("ask", "外资奖励多少？", env={"RAG_EMBEDDING_MODEL": str(e5_dir)})
    assert result.returncode == 1 and "run `rag ingest` first" in result.stderr


def test_many_questions_at_once_are_all_answered(assistant):
    """Threads share one model and one index: no tokenizer "Already borrowed", no
    half-initialised store, the same answer as asked alone."""
    from concurrent.futures import ThreadPoolExecutor

    questions = ["莱芜区上半年实际使用外资多少？", "飞地项目投产后前三年按多大比例奖励？"] * 8
    alone = {q: assistant.ask(q).answer for q in set(questions)}
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda q: (q, assistant.ask(q).answer), questions))
    assert all(answer == alone[q] for q, answer in together)


@pytest.mark.parametrize(
    ("question", "named", "fact"),
    [
        ("明川区楼宇经济政策什么时候开始施行？", "policies/building-economy.md", "2023年7月1日"),
        ("外资奖励办法的申报截止日期是哪天？", "policies/foreign-investment-awards.md", "2月28日"),
    ],
)
def test_a_question_naming_a_policy_is_answered_from_that_policy(assistant, question, named, fact):
    """The other policies have clauses just as close (their own 施行日期, 申报期限)."""
    answer = assistant.ask(question)
    assert {c.doc_id for c in answer.citations} == {named}
    assert fact in split_sentences(answer.answer)[0]
