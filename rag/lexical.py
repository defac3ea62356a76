"""The lexical (BM25) side of retrieval, over Chinese character bigrams.

Chroma's own BM25 splits on whitespace, which Chinese does not have, so this leg lives
in the app: bm25s (sparse-matrix BM25) over character bigrams. Bigrams, not jieba words:
on a Chinese paraphrase set BM25 over bigrams found the right passage first for 0.86 of
questions against 0.74 for jieba (DESIGN.md), and in fusion on rgb-dev the two differed
by nothing at hit@5 (bench/README.md); bigrams also need no dictionary for new terms.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import unicodedata
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import astuple, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]+|[a-z0-9]+(?:[.%][0-9]+%?)*")


# Saved with the index: a saved index made with other tokens is rebuilt, not misread.
TOKENS = "bigram-v2"


def _normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def bigram_tokens(text: str) -> list[str]:
    """Overlapping character bigrams of each Chinese run (a lone character stays a
    unigram); Latin words and numbers such as `3227` or `88.6%` stay whole."""
    out: list[str] = []
    for run in _TOKEN.findall(_normalise(text)):
        if run[0].isascii() or len(run) == 1:
            out.append(run)
        else:
            out.extend(run[i : i + 2] for i in range(len(run) - 1))
    return out


@lru_cache(maxsize=2048)
def bigram_set(text: str) -> frozenset[str]:
    """`bigram_tokens` as a set, remembered for the last 2,048 texts: the same passages
    and sentences come back question after question, and tokenising them again was a
    fifth of an answer's Python time (which, under load, all requests wait for). At most
    ~21 MiB when every entry is a 300-character chunk: the bigrams are interned, so the
    sets share their strings."""
    return frozenset(map(sys.intern, bigram_tokens(text)))


def jaccard(a: AbstractSet[str], b: AbstractSet[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


# Chunk metadata kept beside the BM25 matrix so filters need no round trip to Chroma.
FILTER_FIELDS = ("date_int", "source", "doc_type", "doc_id", "kb")


@dataclass(frozen=True)
class LexicalRow:
    """One visible chunk as the lexical index keeps it."""

    record_id: str  # the Chroma row, to fetch what only the vector store holds
    chunk_id: str
    text: str
    fields: dict  # FILTER_FIELDS


class LexicalIndex:
    """BM25 over the chunk texts of one generation; row `i` is `rows[i]`.

    Immutable: a new generation gets a new index (`derive`), saved in a folder of its own,
    so a reader keeps using the one it started with while a writer publishes the next.
    """

    def __init__(self, rows: Sequence[LexicalRow], bm25):
        self.rows = list(rows)
        self.chunk_ids = [r.chunk_id for r in self.rows]
        self.record_ids = [r.record_id for r in self.rows]
        self.row = {cid: i for i, cid in enumerate(self.chunk_ids)}
        self._bm25 = bm25
        self.fields = {
            name: np.asarray([r.fields.get(name, "") for r in self.rows]) for name in FILTER_FIELDS
        }
        self.fields["date_int"] = np.asarray(
            [int(r.fields.get("date_int") or 0) for r in self.rows], dtype=np.int64
        )
        self._df: np.ndarray | None = None
        # The answerer asks for the same tokens again and again; only the index's own
        # vocabulary is kept, so questions full of unknown bigrams cannot grow it.
        self._idf: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def idf(self, token: str) -> float:
        """BM25's inverse document frequency of `token` over the indexed chunks."""
        cached = self._idf.get(token)
        if cached is not None:
            return cached
        n = len(self.rows)
        if self._df is None:
            self._df = np.diff(self._bm25.scores["indptr"]) if n else np.zeros(0)
        tid = self._bm25.vocab_dict.get(token) if n else None
        known = tid is not None and tid < len(self._df)
        df = int(self._df[tid]) if known else 0
        value = float(np.log(1 + (n - df + 0.5) / (df + 0.5)))
        if known:
            self._idf[token] = value
        return value

    @classmethod
    def build(cls, rows: Sequence[LexicalRow]) -> LexicalIndex:
        import bm25s

        bm25 = bm25s.BM25()
        if rows:
            bm25.index([bigram_tokens(r.text) or [""] for r in rows], show_progress=False)
        return cls(rows, bm25)

    def derive(self, drop_docs: set[str], new_rows: Sequence[LexicalRow]) -> LexicalIndex:
        """The next generation's index: these documents' rows gone, `new_rows` added."""
        kept = [r for r in self.rows if r.fields.get("doc_id") not in drop_docs]
        return LexicalIndex.build([*kept, *new_rows])

    def scores(self, query: str, mask: np.ndarray | None = None) -> np.ndarray:
        """BM25 score of every row for `query` (zeros where `mask` is False)."""
        if not self.rows:
            return np.zeros(0, dtype=np.float32)
        tokens = bigram_tokens(query)
        scores = self._bm25.get_scores(tokens) if tokens else np.zeros(len(self.rows))
        scores = np.asarray(scores, dtype=np.float32)
        return scores * mask if mask is not None else scores

    def coverage(self, query: str) -> np.ndarray:
        """Share of the query's distinct bigrams, weighted by idf, that each row holds.

        Read from the BM25 matrix (a column per bigram listing the rows that hold it), so
        it costs what BM25 costs instead of a bigram set per candidate."""
        covered = np.zeros(len(self.rows), dtype=np.float32)
        tokens = bigram_set(query)
        mass = sum(self.idf(t) for t in tokens)
        if not self.rows or mass <= 0:
            return covered
        indptr, holders = self._bm25.scores["indptr"], self._bm25.scores["indices"]
        for token in tokens:
            tid = self._bm25.vocab_dict.get(token)
            if tid is not None and tid + 1 < len(indptr):
                covered[holders[indptr[tid] : indptr[tid + 1]]] += self.idf(token)
        return covered / mass

    def top(self, scores: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The `k` best (chunk_id, score) pairs with a positive score."""
        if scores.size == 0:
            return []
        k = min(k, scores.size)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self.chunk_ids[i], float(scores[i])) for i in top if scores[i] > 0]

    def save(self, folder: Path) -> None:
        """Write into `folder` (a new one per generation) through a temporary name, so a
        reader finds the whole index or none."""
        work = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        if self.rows:
            self._bm25.save(str(work), show_progress=False)
        meta = {"tokens": TOKENS, "rows": [list(astuple(r)) for r in self.rows]}
        (work / "lexical.json").write_text(json.dumps(meta, ensure_ascii=False), "utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        work.rename(folder)

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex | None:
        """The saved index, or None when there is none (or it is of an old format)."""
        import bm25s

        meta_path = folder / "lexical.json"
        if not meta_path.is_file():
            return None
        meta = json.loads(meta_path.read_text("utf-8"))
        if meta.get("tokens") != TOKENS:
            return None
        rows = [LexicalRow(*r) for r in meta["rows"]]
        bm25 = bm25s.BM25.load(str(folder), show_progress=False) if rows else None
        return cls(rows, bm25)
