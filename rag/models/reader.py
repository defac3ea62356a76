"""The reading model at run time: where in a passage is the answer, and is it there at all.

One int8 ONNX graph (trained by `rag.models.train_reader`, shipped in `rag/models/reader-model/`)
reads (question, passage window) pairs and gives, per token, a start and an end score, and
per window a has-answer score. `Reader.read_spans` cuts each passage into windows as
training did, runs each passage's windows in one batch (its own: int8 activations are scaled
over the batch), and returns each passage's best non-overlapping spans as character offsets
into that passage; `Reader.read`, each passage's best. Runs on ONNX Runtime, whose `run` may be called
from several threads at once (its documented contract); a semaphore sized to the CPUs
bounds how many do, so a busy server queues reads instead of oversubscribing cores.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from rag.models.reader_data import MAX_QUESTION_TOKENS, header_text
from rag.types import Hit

BUNDLED_READER = Path(__file__).parent / "reader-model"
MAX_ANSWER_TOKENS = 48
N_BEST = 20  # spans looked at per window: the best in each sentence, or of a kind wanted
CACHED_READINGS = 2048  # (question, passage) readings kept: a reranked passage is read once
_FILES = ("reader.onnx", "tokenizer.json")


class ReaderError(RuntimeError):
    """The reading model is missing or does not match its card; says how to rebuild it."""


@dataclass(frozen=True)
class Reading:
    """An answer span in one passage. `start`/`end` are offsets into that passage;
    `span_score` is start + end logit minus the no-answer (<s>) logits, `has_answer` the
    has-answer head's probability."""

    passage: int
    start: int
    end: int
    text: str
    span_score: float
    has_answer: float

    @property
    def confidence(self) -> float:
        """One number to rank and refuse by: the has-answer probability, lowered where the
        span head itself prefers "no answer" (a positive span_score leaves it as it is)."""
        return self.has_answer * float(1 / (1 + np.exp(-self.span_score)))


class Reader:
    """One ONNX session and its tokenizer; safe to share between threads."""

    def __init__(self, folder: Path, max_len: int = 256, stride: int = 96, threads: int = 0):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.folder = folder
        self.max_len = max_len
        self.stride = stride
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.bos = self.tokenizer.token_to_id("<s>")
        self.eos = self.tokenizer.token_to_id("</s>")
        self.pad = self.tokenizer.token_to_id("<pad>")
        cpus = len(os.sched_getaffinity(0))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or cpus
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(folder / "reader.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self._slots = threading.BoundedSemaphore(max(1, cpus // 2))
        # A fast tokenizer used from two threads at once fails ("Already borrowed").
        self._tokenizing = threading.Lock()
        self._cache: OrderedDict[tuple[str, str], list[Reading]] = OrderedDict()
        self._cache_lock = threading.Lock()

    @classmethod
    def load(cls, folder: Path = BUNDLED_READER, check_card: bool = True, **kwargs) -> Reader:
        """The model in `folder`; a ReaderError if a file is missing or differs from the
        hashes its card recorded (a damaged copy would answer wrongly, not fail)."""
        missing = [f for f in _FILES if not (folder / f).is_file()]
        if missing:
            raise ReaderError(
                f"reading model {folder} lacks {', '.join(missing)}: "
                "rebuild it with `make model` or set RAG_READER=none"
            )
        if check_card:
            problem = verify(folder)
            if problem:
                raise ReaderError(problem)
        config = {}
        card = folder / "card.json"
        if card.is_file():
            config = json.loads(card.read_text("utf-8")).get("config", {})
        kwargs.setdefault("max_len", config.get("max_len", 256))
        kwargs.setdefault("stride", config.get("stride", 96))
        return cls(folder, **kwargs)

    def _windows(self, q_ids: list[int], context: str) -> list[tuple[list[int], list]]:
        enc = self.tokenizer.encode(context, add_special_tokens=False)
        head = [self.bos, *q_ids, self.eos, self.eos]
        room = self.max_len - len(head) - 1
        out, begin = [], 0
        while True:
            part = slice(begin, min(begin + room, len(enc.ids)))
            out.append((head + enc.ids[part] + [self.eos], enc.offsets[part]))
            if part.stop >= len(enc.ids):
                return out
            begin += room - self.stride if room > self.stride else room

    def read(self, question: str, passages: Sequence[str], figures: bool = True) -> list[Reading]:
        """Each passage's best span (one Reading per passage that has one, in passage
        order); without `figures`, the best span that is not only a figure."""
        return [spans[0] for spans in self.read_spans(question, passages, figures) if spans]

    def read_spans(
        self, question: str, passages: Sequence[str], figures: bool = True
    ) -> list[list[Reading]]:
        """For each passage, its best spans, best first, none overlapping another (so each
        sentence of a passage can be asked for the best span inside it); without `figures`,
        only spans that are not only a figure. A passage read for this question lately (to
        rerank, then to answer) is not read again, whichever spans are asked for."""
        found: dict[int, list[Reading]] = {}
        todo: list[int] = []
        with self._cache_lock:
            for n, text in enumerate(passages):
                seen = self._cache.get((question, text))
                if seen is None:
                    todo.append(n)
                else:
                    self._cache.move_to_end((question, text))
                    found[n] = seen
        if todo:
            read = self._read(question, [passages[n] for n in todo])
            for n, spans in zip(todo, read, strict=True):
                found[n] = spans
                with self._cache_lock:
                    self._cache[(question, passages[n])] = spans
                    while len(self._cache) > CACHED_READINGS:
                        self._cache.popitem(last=False)
        return [
            _apart([replace(r, passage=n) for r in found[n] if figures or not is_figure(r.text)])
            for n in range(len(passages))
        ]

    def _read(self, question: str, passages: Sequence[str]) -> list[list[Reading]]:
        """Each passage's candidate spans, best first (overlapping, figures included)."""
        with self._tokenizing:
            q_ids = self.tokenizer.encode(question, add_special_tokens=False).ids
            q_ids = q_ids[:MAX_QUESTION_TOKENS]
            windows = [self._windows(q_ids, text) for text in passages]
        context_from = len(q_ids) + 3
        out = []
        for text, own in zip(passages, windows, strict=True):
            # One run per passage: int8 activations are scaled by the whole batch's range,
            # so a passage read beside others would read a little differently (and its
            # cached reading would depend on what it was read with).
            width = max(len(ids) for ids, _ in own)
            input_ids = np.full((len(own), width), self.pad, dtype=np.int64)
            mask = np.zeros((len(own), width), dtype=np.int64)
            for r, (ids, _) in enumerate(own):
                input_ids[r, : len(ids)] = ids
                mask[r, : len(ids)] = 1
            with self._slots:
                starts, ends, has = self.session.run(
                    None, {"input_ids": input_ids, "attention_mask": mask}
                )
            spans = []
            for r, (_, offsets) in enumerate(own):
                has_answer = float(1 / (1 + np.exp(-has[r])))
                no_answer = starts[r][0] + ends[r][0]
                for i, j, score in best_spans(
                    starts[r], ends[r], context_from, len(offsets), n=N_BEST
                ):
                    start, end = _trimmed(text, offsets[i][0], offsets[j][1])
                    if start < end:
                        spans.append(
                            Reading(
                                0, start, end, text[start:end], float(score - no_answer), has_answer
                            )
                        )
            out.append(sorted(spans, key=lambda x: -x.confidence))
        return out


def _apart(readings: list[Reading]) -> list[Reading]:
    """The readings, best first, less each that overlaps a better one (the n-best of a
    window are mostly the best span's neighbours, and windows overlap too)."""
    kept: list[Reading] = []
    for reading in readings:
        if all(reading.end <= k.start or reading.start >= k.end for k in kept):
            kept.append(reading)
    return kept


def passage_header(hit: Hit) -> str:
    """The header line the product puts before a passage (metadata the text lacks)."""
    meta = hit.chunk.meta
    return header_text(
        meta.get("title", ""), meta.get("source", ""), meta.get("author", ""), meta.get("date", "")
    )


def passage_text(hit: Hit) -> str:
    """What the reading model reads of a passage: its header line, then its text (the same
    text whoever asks, so a passage read to rerank is not read again to answer)."""
    return f"{passage_header(hit)}\n{hit.chunk.text}"


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    """A piece's offsets may include the space it absorbed (Metaspace): trim it."""
    while start < end and text[start].isspace():
        start += 1
    return start, end


def best_spans(
    starts: np.ndarray,
    ends: np.ndarray,
    first: int,
    length: int,
    longest: int = MAX_ANSWER_TOKENS,
    n: int = 1,
) -> list[tuple[int, int, float]]:
    """The `n` context token pairs (i, j), i ≤ j < i + longest, with the highest start +
    end scores, best first; indexes are into the window's context tokens."""
    if length <= 0:
        return []
    s = starts[first : first + length]
    e = ends[first : first + length]
    grid = s[:, None] + e[None, :]
    i, j = np.indices(grid.shape)
    grid = np.where((j >= i) & (j < i + longest), grid, -np.inf).ravel()
    n = min(n, int(np.isfinite(grid).sum()))
    top = np.argpartition(-grid, n - 1)[:n] if n < grid.size else np.arange(grid.size)
    top = top[np.argsort(-grid[top], kind="stable")][:n]
    return [(*divmod(int(flat), length), float(grid[flat])) for flat in top]


# A span that is only a figure (a date, an amount, a count with its unit): not an answer
# to a question that does not ask for one (如何处置…, 采取了什么措施), though a model trained
# on many 多少 questions offers one wherever a passage holds a number.
_FIGURE_ONLY = re.compile(
    r"^[\s\d.,，%％‰\-—~～至到年月日号时分秒万亿千百十零〇一二三四五六七八九两余多约近超过以上以下左右"
    r"元美人次个项家名所座台辆吨亩公里平方米千瓦倍批天周（）()]+$"
)


def is_figure(text: str) -> bool:
    """Whether `text` is only a figure (2月17日, 3.7亿元, 200余家, 94%)."""
    return bool(_FIGURE_ONLY.match(text.strip()))


def verify(folder: Path) -> str:
    """ "" when the model files match the hashes in card.json, else what is wrong."""
    card = folder / "card.json"
    if not card.is_file():
        return f"reading model {folder} has no card.json: rebuild it with `make model`"
    recorded = json.loads(card.read_text("utf-8")).get("files", {})
    for name in _FILES:
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        if recorded.get(name) != digest:
            return (
                f"reading model file {folder / name} differs from its card (damaged or "
                "replaced): restore it from the release or rebuild with `make model`"
            )
    return ""


# -- scoring on a SQuAD-format set (CMRC 2018's own EM / F1 rules) -------------------------

_PUNCT = set("-:_*^/\\~`+=，。：？！“”；’《》……·、「」（）－～『』,.!?;'\"()[]{}<>【】")


def _segment(text: str) -> list[str]:
    """CMRC's mixed segmentation: every CJK character alone, other runs as words."""
    out, word = [], ""
    for char in unicodedata.normalize("NFKC", text).lower():
        if re.match(r"[\u4e00-\u9fff]", char) or char in _PUNCT or char.isspace():
            if word:
                out.append(word)
                word = ""
            if not char.isspace() and char not in _PUNCT:
                out.append(char)
        else:
            word += char
    if word:
        out.append(word)
    return out


def _lcs(a: list[str], b: list[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        prev = 0
        for j, y in enumerate(b, 1):
            cur = row[j]
            row[j] = prev + 1 if x == y else max(row[j], row[j - 1])
            prev = cur
    return row[-1]


def f1_em(prediction: str, answers: Sequence[str]) -> tuple[float, float]:
    """CMRC 2018's F1 (longest common subsequence over mixed segments) and exact match,
    each the best over the reference answers."""
    pred = _segment(prediction)
    f1 = em = 0.0
    for answer in answers:
        gold = _segment(answer)
        em = max(em, float(pred == gold))
        common = _lcs(pred, gold)
        if common:
            p, r = common / len(pred), common / len(gold)
            f1 = max(f1, 2 * p * r / (p + r))
    return f1, em


def evaluate_squad(reader: Reader, path: Path, limit: int = 0) -> dict:
    """EM and F1 (×100, as CMRC reports them) over a SQuAD-format file's questions."""
    data = json.loads(path.read_text("utf-8"))
    f1s, ems = [], []
    for article in data["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                if limit and len(f1s) >= limit:
                    break
                answers = [a["text"] for a in qa["answers"]]
                readings = reader.read(qa["question"], [para["context"]])
                f1, em = f1_em(readings[0].text if readings else "", answers)
                f1s.append(f1)
                ems.append(em)
    return {
        "questions": len(f1s),
        "f1": round(100 * float(np.mean(f1s)), 1),
        "em": round(100 * float(np.mean(ems)), 1),
    }
