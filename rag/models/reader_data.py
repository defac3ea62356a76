"""Training data for the reading model: SQuAD-style questions turned into model windows.

Everything here is about data, not about torch: reading the open sets in
`shared/training/` (CMRC 2018, DRCD converted to simplified, questions made from the CRUD
news passages), and cutting (question, header + passage) into windows of token ids with
the answer's token positions — or none, for a window that does not hold the answer.
Hugging Face's `run_qa.py` is the model of the windowing (stride over the context, offsets
back to characters); it is rewritten here because we keep the e5 tokenizer's own template
(`<s> question </s></s> context </s>`) and add hard negatives from other articles.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

MAX_QUESTION_TOKENS = 64


@dataclass(frozen=True)
class Example:
    """One question over one context; `answer_start` is -1 when the context lacks it."""

    qid: str
    question: str
    context: str
    answers: tuple[str, ...]
    answer_start: int  # of answers[0] in context, or -1
    article: str  # questions of one article share it: negatives come from other articles
    source: str  # which data set (cmrc, drcd, cloze, header)


@dataclass
class Window:
    """Token ids of (question, part of the context); start/end index the answer's tokens,
    or are 0 (the <s> position) when this part of the context does not hold it."""

    input_ids: list[int]
    start: int
    end: int
    context_from: int  # first context token position in input_ids
    offsets: list[tuple[int, int]] = field(default_factory=list)  # per input position


# -- reading the open sets ---------------------------------------------------------------


def read_squad(path: Path, source: str, convert=None) -> list[Example]:
    """SQuAD-format questions. `convert` (e.g. traditional → simplified) is applied to the
    paragraph and the answers, and each answer is found again in the converted text:
    character conversion can change lengths, so the old offsets are not trusted."""
    data = json.loads(path.read_text("utf-8"))
    out = []
    for a_no, article in enumerate(data["data"]):
        for p_no, para in enumerate(article["paragraphs"]):
            context = para["context"]
            if convert:
                context = convert(context)
            for qa in para["qas"]:
                answers = [a["text"] for a in qa.get("answers", []) if a.get("text")]
                if convert:
                    answers = [convert(a) for a in answers]
                answers = [a.strip() for a in answers if a.strip()]
                if not answers:
                    continue
                start = _locate(context, answers[0], qa["answers"][0].get("answer_start", -1))
                if start < 0:
                    continue  # the answer is not in the paragraph (a few in every set)
                question = convert(qa["question"]) if convert else qa["question"]
                out.append(
                    Example(
                        qid=str(qa["id"]),
                        question=question.strip(),
                        context=context,
                        answers=tuple(dict.fromkeys(answers)),
                        answer_start=start,
                        article=f"{source}:{a_no}",
                        source=source,
                    )
                )
            del p_no
    return out


def _locate(context: str, answer: str, hint: int) -> int:
    """Where `answer` is in `context`: the occurrence nearest the given offset."""
    found = [m.start() for m in re.finditer(re.escape(answer), context)]
    if not found:
        return -1
    return min(found, key=lambda s: abs(s - hint)) if hint >= 0 else found[0]


def traditional_to_simplified():
    """OpenCC's t2s converter (the `train` extra); character-level, as DRCD needs."""
    try:
        import opencc
    except ImportError as err:  # pragma: no cover - named for the person running it
        raise RuntimeError("training on DRCD needs OpenCC: pip install -e '.[train]'") from err
    return opencc.OpenCC("t2s").convert


# -- questions made from news sentences (in-domain, unlabeled text) ----------------------

# A typed fact in a sentence and the question words that ask for it. Policy and economy
# answers are amounts, shares, dates and counts far more often than Wikipedia's names.
_FACTS = [
    (re.compile(r"\d+(?:\.\d+)?(?:多)?(?:万|亿|千)?(?:多)?(?:元|美元|欧元|港元)"), "多少钱"),
    (re.compile(r"\d+(?:\.\d+)?(?:%|％)|百分之[一二三四五六七八九十百点零\d.]+"), "多少"),
    (
        re.compile(r"(?:\d{4}年)?\d{1,2}月(?:\d{1,2}日)?(?:至\d{1,2}月\d{1,2}日)?(?![份电\d])"),
        "什么时候",
    ),
    (re.compile(r"\d{4}年(?:底|初|以来)?"), "哪一年"),
    (
        re.compile(
            r"\d+(?:\.\d+)?(?:多)?(?:万|亿)?(?:个|家|项|人|名|户|所|座|台|辆|吨|亩|公里|平方米|千瓦|个百分点)"
        ),
        "多少",
    ),
]
_CLAUSE_END = re.compile(r"[，。；！？]")
# A clause from a dateline or byline makes a question about the wire, not the news.
_BYLINE = re.compile(r"正文|来源|记者|摄|电\s*[（(]|编辑")
_DATELINE = re.compile(
    r"^(?:\[?\s*(?P<date>\d{4}-\d{2}-\d{2})[^\]，]*\]?\s*[，,]?\s*正文[:：])?\s*"
    r"(?P<source>[\u4e00-\u9fff]{1,6}?(?:网|社|日报|晚报|报|台))[\u4e00-\u9fff]{0,8}?\d{1,2}月\d{1,2}日电\s*"
    r"[（(]\s*(?:记者|通讯员)\s*(?P<author>[\u4e00-\u9fff、 ]{2,20}?)\s*[）)]"
)
_HEADER_QUESTIONS = {
    "source": ["这篇报道是哪家媒体发布的？", "这条新闻的来源是哪里？", "该文出自哪个媒体？"],
    "author": ["这篇报道的记者是谁？", "文章的作者是谁？", "这条新闻是谁写的？"],
    "date": ["这篇报道是什么时候发布的？", "这条新闻的发布日期是哪天？"],
}


def header_text(title: str = "", source: str = "", author: str = "", date: str = "") -> str:
    """The line the reader sees before a passage: the metadata the cleaner took out of the
    text (a news dateline, a byline), so a question about them can be answered."""
    parts = [f"标题：{title}" if title else "", f"来源：{source}" if source else ""]
    parts += [f"作者：{author}" if author else "", f"日期：{date}" if date else ""]
    return " ".join(p for p in parts if p)


def cloze_examples(doc_id: str, text: str, rng: random.Random, per_doc: int = 2) -> list[Example]:
    """Questions made from a passage's own sentences: a clause with a typed fact (an
    amount, a share, a date, a count) becomes a question with that fact asked for, e.g.
    "项目总投资达50亿元" → "项目总投资达多少钱？" with 50亿元 as the answer."""
    found = []
    for pattern, asks in _FACTS:
        for m in pattern.finditer(text):
            if len(m.group()) < 2:
                continue
            found.append((m.start(), m.end(), asks))
    rng.shuffle(found)
    out, used = [], set()
    for start, end, asks in found:
        if len(out) >= per_doc or start in used:
            continue
        left = max((m.end() for m in _CLAUSE_END.finditer(text, 0, start)), default=0)
        right_m = _CLAUSE_END.search(text, end)
        right = right_m.start() if right_m else len(text)
        # A clause alone is often too short to say what is asked: take the one before too.
        if start - left + right - end < 8 and left > 0:
            left = max((m.end() for m in _CLAUSE_END.finditer(text, 0, left - 1)), default=0)
        question = (text[left:start] + asks + text[end:right]).strip(" ，,")
        if len(question) < 6 or len(question) > 80 or _BYLINE.search(question):
            continue
        used.add(start)
        out.append(
            Example(
                qid=f"cloze:{doc_id}:{start}",
                question=question + "？",
                context=text,
                answers=(text[start:end],),
                answer_start=start,
                article=f"crud:{doc_id}",
                source="cloze",
            )
        )
    return out


def header_examples(doc_id: str, text: str, rng: random.Random) -> list[Example]:
    """Questions about a news passage's metadata, answered from the header line the
    product puts before the passage (source, reporter, date read off its dateline)."""
    m = _DATELINE.match(text)
    if not m or not m.group("author") or m.group("source") == "本报":
        return []
    fields = {
        "source": m.group("source"),
        "author": m.group("author").strip(),
        "date": m.group("date") or "",
    }
    body = text[m.end() :].strip()
    header = header_text(source=fields["source"], author=fields["author"], date=fields["date"])
    context = header + "\n" + body
    kind = rng.choice([k for k, v in fields.items() if v])
    answer = fields[kind]
    start = context.find(answer)
    return [
        Example(
            qid=f"header:{doc_id}:{kind}",
            question=rng.choice(_HEADER_QUESTIONS[kind]),
            context=context,
            answers=(answer,),
            answer_start=start,
            article=f"crud:{doc_id}",
            source="header",
        )
    ]


def read_news_questions(path: Path, seed: int, cloze_docs: int, header_docs: int) -> list[Example]:
    """Cloze and header questions from a sample of the CRUD news passages."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    rng = random.Random(seed)
    rng.shuffle(records)
    out: list[Example] = []
    for rec in records[:cloze_docs]:
        text = rec["text"][:600]
        m = _DATELINE.match(text)
        out += cloze_examples(rec["id"], text[m.end() :] if m else text, rng)
    headers = 0
    for rec in records[cloze_docs:]:
        if headers >= header_docs:
            break
        got = header_examples(rec["id"], rec["text"][:500], rng)
        headers += len(got)
        out += got
    return out


# -- windows -------------------------------------------------------------------------------


def windows(
    tokenizer,
    question: str,
    context: str,
    answer_start: int = -1,
    answer_len: int = 0,
    max_len: int = 256,
    stride: int = 96,
) -> list[Window]:
    """(question, context) cut into windows of at most `max_len` tokens that overlap by
    `stride` tokens; each marks the answer's tokens if it holds the whole answer.
    `tokenizer` is a `tokenizers.Tokenizer` (the reader's, or the e5 one it was cut from)."""
    bos, eos = tokenizer.token_to_id("<s>"), tokenizer.token_to_id("</s>")
    q_ids = tokenizer.encode(question, add_special_tokens=False).ids[:MAX_QUESTION_TOKENS]
    enc = tokenizer.encode(context, add_special_tokens=False)
    ids, offsets = enc.ids, enc.offsets
    head = [bos, *q_ids, eos, eos]
    room = max_len - len(head) - 1
    if room < 16:
        raise ValueError("max_len leaves no room for the passage")
    answer_end = answer_start + answer_len
    out, begin = [], 0
    while True:
        part = range(begin, min(begin + room, len(ids)))
        start = end = 0
        if answer_start >= 0 and part:
            toks = [i for i in part if offsets[i][1] > answer_start and offsets[i][0] < answer_end]
            if toks and offsets[part[0]][0] <= answer_start and offsets[part[-1]][1] >= answer_end:
                start, end = len(head) + toks[0] - part[0], len(head) + toks[-1] - part[0]
        out.append(
            Window(
                input_ids=head + [ids[i] for i in part] + [eos],
                start=start,
                end=end,
                context_from=len(head),
                offsets=[(0, 0)] * len(head) + [offsets[i] for i in part] + [(0, 0)],
            )
        )
        if part.stop >= len(ids):
            break
        begin += room - stride if room > stride else room
    return out


def content_hash(paths: Iterable[Path]) -> dict[str, str]:
    """sha256 of each file (for the model card)."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def chunked(seq: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]
