"""The reading model's training recipe on a tiny data set of the real shape: windows,
the cut vocabulary, resumable training, the int8 export and its card."""

from __future__ import annotations

import dataclasses
import gzip
import json
import shutil

import pytest

torch = pytest.importorskip("torch")

from rag.models import reader_data as rd  # noqa: E402
from rag.models.reader import Reader, ReaderError, best_spans, f1_em, verify  # noqa: E402
from rag.models.train_reader import TrainConfig, export, run_dir, train, write_card  # noqa: E402

PARAGRAPHS = [
    (
        "明川区楼宇经济",
        "明川区对新入驻甲级写字楼的企业，首年租金补贴50%，第二年补贴30%。"
        "总部企业落户奖励最高1000万元。",
        [("首年租金补贴多少？", "50%"), ("总部企业落户奖励最高多少？", "1000万元")],
    ),
    (
        "飞地经济",
        "青禾—明川飞地产业园规划面积12平方公里，首期开发3000亩。园区税收按6:4分成，期限为10年。",
        [("飞地产业园规划面积多大？", "12平方公里"), ("税收怎么分成？", "6:4")],
    ),
    (
        "外资奖励",
        "新设外资企业当年实际到资500万美元以上的，按到资额的2%给予奖励，最高不超过300万元。",
        [("外资企业按到资额的多少给予奖励？", "2%")],
    ),
]
TRADITIONAL = [
    (
        "臺北",
        "臺北市是中華民國的首都，人口約二百五十萬人。",
        [("臺北市人口約多少？", "二百五十萬人")],
    ),
]


def squad(paragraphs, prefix: str) -> dict:
    data = []
    for a, (title, context, qas) in enumerate(paragraphs):
        items = [
            {
                "id": f"{prefix}-{a}-{q}",
                "question": question,
                "answers": [{"text": answer, "answer_start": context.find(answer)}],
            }
            for q, (question, answer) in enumerate(qas)
        ]
        data.append({"title": title, "paragraphs": [{"context": context, "qas": items}]})
    return {"data": data}


@pytest.fixture
def training_dir(tmp_path):
    root = tmp_path / "training"
    for name, content in {
        "cmrc2018/train.json": squad(PARAGRAPHS, "train"),
        "cmrc2018/trial.json": squad(PARAGRAPHS[:1], "trial"),
        "cmrc2018/dev.json": squad(PARAGRAPHS[1:], "dev"),
        "drcd/DRCD_dev.json": squad(TRADITIONAL, "drcd"),
        "drcd/DRCD_test.json": squad(TRADITIONAL, "drcd-test"),
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(json.dumps(content, ensure_ascii=False), "utf-8")
    news = [
        {
            "id": "n1",
            "text": "2023-08-04 10:00，正文：中新网北京8月4日电 (记者 王琳)今年全省实际使用外资1200亿元，同比增长8.5%。",
        },
        {"id": "n2", "text": "项目总投资50亿元，计划2024年3月开工，建成后年产值可达80亿元。"},
    ]
    (root / "crud-news").mkdir()
    with gzip.open(root / "crud-news/docs.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in news)
    return root


def tiny(training_dir, e5_dir, **kw) -> TrainConfig:
    return TrainConfig(
        training_dir=str(training_dir),
        base_model=str(e5_dir),
        layers=1,
        vocab_size=3000,
        max_len=64,
        stride=16,
        batch_size=4,
        epochs=2.0,
        checkpoint_every=2,
        threads=1,
        cloze_docs=2,
        header_docs=2,
        **kw,
    )


def test_windows_mark_the_answer_only_where_the_whole_answer_is(e5_dir):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(e5_dir / "tokenizer.json"))
    context = "第一条 " + "园区企业按规定享受扶持。" * 8 + "首年租金补贴50%。" + "其他条款。" * 8
    start = context.find("50%")
    wins = rd.windows(tok, "首年租金补贴多少？", context, start, 3, max_len=48, stride=8)
    assert len(wins) > 2 and all(len(w.input_ids) <= 48 for w in wins)
    holding = [w for w in wins if w.start]
    assert holding
    for w in holding:
        a, b = w.offsets[w.start][0], w.offsets[w.end][1]
        assert "50%" in context[a:b] and len(context[a:b]) <= 5
    assert any(w.start == 0 for w in wins)  # the other windows teach "not here"


def test_cloze_questions_ask_for_the_fact_they_hide():
    import random

    text = "今年全省实际使用外资1200亿元，同比增长8.5%，其中制造业占比提高。"
    made = rd.cloze_examples("d", text, random.Random(0), per_doc=2)
    assert made
    for ex in made:
        answer = ex.answers[0]
        assert ex.context[ex.answer_start : ex.answer_start + len(answer)] == answer
        assert answer not in ex.question and ex.question.endswith("？")


def test_traditional_paragraphs_are_converted_and_answers_found_again(training_dir):
    examples = rd.read_squad(
        training_dir / "drcd/DRCD_dev.json", "drcd", convert=rd.traditional_to_simplified()
    )
    (ex,) = examples
    assert "台北市" in ex.context and ex.answers == ("二百五十万人",)
    assert ex.context[ex.answer_start :].startswith("二百五十万人")


def test_training_stopped_and_resumed_ends_with_the_weights_of_an_unbroken_run(
    training_dir, e5_dir, tmp_path
):
    config = tiny(training_dir, e5_dir)
    broken = tmp_path / "broken"
    run = train(config, broken, stop_after=3)
    assert not (run / "final.pt").exists() and (run / "step-3.pt").exists()
    train(config, broken)  # continues from step 3
    unbroken = train(config, tmp_path / "unbroken")
    a = torch.load(run / "final.pt", weights_only=False)["model"]
    b = torch.load(unbroken / "final.pt", weights_only=False)["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert run.name == run_dir(config, tmp_path).name  # named by the config alone


def test_the_export_reads_offsets_back_and_its_card_guards_it(training_dir, e5_dir, tmp_path):
    config = tiny(training_dir, e5_dir, eval_limit=3)
    work = tmp_path / "work"
    train(config, work)
    out = tmp_path / "out" / "reader"
    exported = export(config, work, out)
    card = write_card(config, work, exported, out)
    assert {"f1", "em", "questions"} <= card["scores"]["cmrc2018_dev"].keys()
    assert (out / "NOTICE").read_text("utf-8").count("CC BY-SA") >= 2
    assert card["train_hours"] is not None and "CPU" in card["trained_on"]
    assert "CMRC 2018 dev" in (out / "card.md").read_text("utf-8")
    assert verify(out) == ""
    reader = Reader.load(out)
    passages = ["明川区首年租金补贴50%。", "园区税收按6:4分成。"]
    readings = reader.read("首年租金补贴多少？", passages)
    assert [r.passage for r in readings] == [0, 1]
    for r in readings:
        assert passages[r.passage][r.start : r.end] == r.text and r.text
        assert 0.0 <= r.confidence <= 1.0
    runs = []

    class Counted:
        def __init__(self, session):
            self.session = session

        def run(self, *args):
            runs.append(args[1]["input_ids"].shape[0])
            return self.session.run(*args)

    reader.session = Counted(reader.session)
    again = reader.read("首年租金补贴多少？", [passages[1], "新的段落：补贴三成。"])
    assert runs == [1]  # only the passage not read for this question before
    assert again[0] == dataclasses.replace(readings[1], passage=0)
    damaged = tmp_path / "damaged"
    shutil.copytree(out, damaged)
    (damaged / "reader.onnx").write_bytes((out / "reader.onnx").read_bytes()[:-10])
    with pytest.raises(ReaderError, match="make model"):
        Reader.load(damaged)
    (damaged / "reader.onnx").unlink()
    with pytest.raises(ReaderError, match=r"lacks reader\.onnx"):
        Reader.load(damaged)


def test_the_best_span_is_the_highest_pair_within_the_longest_answer():
    import numpy as np

    starts = np.array([9.0, 0.0, 5.0, 1.0, 0.0])  # position 0 is <s>: never in the context
    ends = np.array([9.0, 0.0, 0.0, 4.0, 6.0])
    assert best_spans(starts, ends, first=1, length=4)[0][:2] == (1, 3)  # 5 + 6, ends ≥ starts
    assert best_spans(starts, ends, first=1, length=4, longest=2)[0][:2] == (1, 2)


def test_cmrc_scores_count_characters_and_words():
    assert f1_em("1963年", ["1963年"]) == (1.0, 1.0)
    f1, em = f1_em("首年租金补贴50%", ["补贴50%"])
    assert em == 0.0 and 0.5 < f1 < 1.0
    assert f1_em("", ["答案"]) == (0.0, 0.0)
