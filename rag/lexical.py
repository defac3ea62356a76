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
TOKENS = "bigram-v3"  # v3: token ids and BM25 columns in .npy files


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

    Kept as token ids, not strings: each row's distinct bigram ids and counts (a sparse
    row matrix), and BM25's scores as a column per token listing the rows that hold it —
    what a question reads. Both are numpy arrays, saved as .npy files and loaded with
    mmap, so a big index costs little memory until it is read. BM25 is Lucene's variant,
    as bm25s computes it (bm25s's tokenizer assigns the ids); the matrix is built here,
    vectorised, because bm25s builds it one document at a time in Python, and an
    incremental update (`derive`) needs it rebuilt from the row matrix in seconds.

    Immutable: a new generation gets a new index (`derive`), saved in a folder of its own,
    so a reader keeps using the one it started with while a writer publishes the next.
    """

    K1, B = 1.5, 0.75  # bm25s's defaults

    def __init__(self, rows: Sequence[LexicalRow], vocab: dict[str, int], row_matrix, scores):
        self.rows = list(rows)
        self.chunk_ids = [r.chunk_id for r in self.rows]
        self.record_ids = [r.record_id for r in self.rows]
        self.row = {cid: i for i, cid in enumerate(self.chunk_ids)}
        self.vocab = vocab  # bigram → token id; only grows, shared with derived indexes
        self.row_ptr, self.row_tokens, self.row_counts = row_matrix
        self.indptr, self.indices, self.data = scores
        self.fields = {
            name: np.asarray([r.fields.get(name, "") for r in self.rows]) for name in FILTER_FIELDS
        }
        self.fields["date_int"] = np.asarray(
            [int(r.fields.get("date_int") or 0) for r in self.rows], dtype=np.int64
        )
        # The answerer asks for the same tokens again and again; only the index's own
        # vocabulary is kept, so questions full of unknown bigrams cannot grow it.
        self._idf: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def _token_id(self, token: str) -> int | None:
        tid = self.vocab.get(token)
        return tid if tid is not None and tid + 1 < len(self.indptr) else None

    def idf(self, token: str) -> float:
        """BM25's inverse document frequency of `token` over the indexed chunks."""
        cached = self._idf.get(token)
        if cached is not None:
            return cached
        tid = self._token_id(token)
        df = int(self.indptr[tid + 1] - self.indptr[tid]) if tid is not None else 0
        value = float(_idf(len(self.rows), df))
        if tid is not None:
            self._idf[token] = value
        return value

    @classmethod
    def build(cls, rows: Sequence[LexicalRow]) -> LexicalIndex:
        empty = np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32)
        return cls.assemble(list(rows), {}, empty, list(rows))

    def derive(self, drop_docs: set[str], new_rows: Sequence[LexicalRow]) -> LexicalIndex:
        """The next generation's index: these documents' rows gone, `new_rows` added.
        Only the new rows are tokenised; the rest is array work over the kept rows."""
        keep = ~np.isin(self.fields["doc_id"], list(drop_docs)) if drop_docs else None
        if keep is None:
            kept_rows, kept_matrix = self.rows, (self.row_ptr, self.row_tokens, self.row_counts)
        else:
            kept_rows = [r for r, k in zip(self.rows, keep, strict=True) if k]
            lengths = np.diff(self.row_ptr)
            entries = np.repeat(keep, lengths)
            kept_matrix = (
                np.concatenate([[0], np.cumsum(lengths[keep])]).astype(np.int64),
                np.asarray(self.row_tokens)[entries],
                np.asarray(self.row_counts)[entries],
            )
        return LexicalIndex.assemble(
            [*kept_rows, *new_rows], dict(self.vocab), kept_matrix, list(new_rows)
        )

    @classmethod
    def assemble(cls, rows, vocab, kept_matrix, new_rows) -> LexicalIndex:
        """An index of `rows`: the first ones already in `kept_matrix`, then `new_rows`,
        tokenised here into `vocab` (which grows)."""
        from bm25s.tokenization import Tokenizer

        tokenizer = Tokenizer(lower=False, splitter=bigram_tokens, stopwords=None)
        tokenizer.word_to_id = vocab
        ptr, tokens, counts = [kept_matrix[0]], [kept_matrix[1]], [kept_matrix[2]]
        end = int(kept_matrix[0][-1])
        for ids in tokenizer.streaming_tokenize(
            [r.text for r in new_rows], update_vocab=True, allow_empty=False
        ):
            distinct, count = np.unique(np.asarray(ids, dtype=np.int32), return_counts=True)
            tokens.append(distinct)
            counts.append(count.astype(np.int32))
            end += len(distinct)
            ptr.append(np.asarray([end], dtype=np.int64))
        row_matrix = (
            np.concatenate(ptr).astype(np.int64),
            np.concatenate(tokens).astype(np.int32),
            np.concatenate(counts).astype(np.int32),
        )
        return cls(rows, vocab, row_matrix, _bm25_columns(row_matrix, len(vocab)))

    def scores(self, query: str, mask: np.ndarray | None = None) -> np.ndarray:
        """BM25 score of every row for `query` (zeros where `mask` is False); a bigram the
        query repeats counts as often as it is repeated, as in bm25s."""
        scores = np.zeros(len(self.rows), dtype=np.float32)
        for token in bigram_tokens(query):
            tid = self._token_id(token)
            if tid is not None:
                a, b = self.indptr[tid], self.indptr[tid + 1]
                scores[self.indices[a:b]] += self.data[a:b]  # a row appears once per column
        return scores * mask if mask is not None else scores

    def coverage(self, query: str) -> np.ndarray:
        """Share of the query's distinct bigrams, weighted by idf, that each row holds.

        Read from the BM25 columns (the rows that hold each bigram), so it costs what
        BM25 costs instead of a bigram set per candidate."""
        covered = np.zeros(len(self.rows), dtype=np.float32)
        tokens = bigram_set(query)
        mass = sum(self.idf(t) for t in tokens)
        if not self.rows or mass <= 0:
            return covered
        for token in tokens:
            tid = self._token_id(token)
            if tid is not None:
                covered[self.indices[self.indptr[tid] : self.indptr[tid + 1]]] += self.idf(token)
        return covered / mass

    def top(self, scores: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The `k` best (chunk_id, score) pairs with a positive score."""
        if scores.size == 0:
            return []
        k = min(k, scores.size)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self.chunk_ids[i], float(scores[i])) for i in top if scores[i] > 0]

    _ARRAYS = ("row_ptr", "row_tokens", "row_counts", "indptr", "indices", "data")

    def save(self, folder: Path) -> None:
        """Write into `folder` (a new one per generation) through a temporary name, so a
        reader finds the whole index or none."""
        work = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        for name in self._ARRAYS:
            np.save(work / f"{name}.npy", np.asarray(getattr(self, name)))
        vocab = sorted(self.vocab, key=self.vocab.__getitem__)
        (work / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), "utf-8")
        with open(work / "rows.jsonl", "w", encoding="utf-8") as out:
            for row in self.rows:
                out.write(json.dumps(astuple(row), ensure_ascii=False) + "\n")
        meta = {"tokens": TOKENS, "rows": len(self.rows)}  # written last: the folder is whole
        (work / "lexical.json").write_text(json.dumps(meta), "utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        work.rename(folder)

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex | None:
        """The saved index (its arrays mapped from the files, not read), or None when
        there is none or it is of an old format."""
        meta_path = folder / "lexical.json"
        if not meta_path.is_file():
            return None
        meta = json.loads(meta_path.read_text("utf-8"))
        if meta.get("tokens") != TOKENS:
            return None
        vocab = json.loads((folder / "vocab.json").read_text("utf-8"))
        with open(folder / "rows.jsonl", encoding="utf-8") as lines:
            rows = [LexicalRow(*json.loads(line)) for line in lines]
        arrays = [np.load(folder / f"{name}.npy", mmap_mode="r") for name in cls._ARRAYS]
        return cls(rows, {t: i for i, t in enumerate(vocab)}, tuple(arrays[:3]), tuple(arrays[3:]))


def _idf(n_rows: int, df):
    """Lucene's BM25 idf, as bm25s has it."""
    return np.log(1 + (n_rows - df + 0.5) / (df + 0.5))


def _bm25_columns(row_matrix, n_tokens: int):
    """BM25 (Lucene: idf × tf / (tf + k1 × (1 − b + b × len / avg len))) of every (row,
    token) pair, regrouped by token: (indptr, row indices, scores), as bm25s stores it."""
    row_ptr, tokens, counts = row_matrix
    n_rows = len(row_ptr) - 1
    lengths = np.diff(row_ptr)
    row_of = np.repeat(np.arange(n_rows, dtype=np.int32), lengths)
    doc_len = np.bincount(row_of, weights=counts, minlength=n_rows) if n_rows else np.zeros(0)
    avg_len = float(doc_len.mean()) if n_rows and doc_len.sum() else 1.0
    df = np.bincount(tokens, minlength=n_tokens)
    tf = counts.astype(np.float32)
    norm = LexicalIndex.K1 * (1 - LexicalIndex.B + LexicalIndex.B * doc_len[row_of] / avg_len)
    scores = (_idf(n_rows, df)[tokens] * tf / (tf + norm)).astype(np.float32)
    order = np.argsort(tokens, kind="stable")  # rows stay in order within a token
    indptr = np.concatenate([[0], np.cumsum(df)]).astype(np.int64)
    return indptr, row_of[order], scores[order]
