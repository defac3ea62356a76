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
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import cached_property, lru_cache
from itertools import compress
from pathlib import Path

import numpy as np

_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]+|[a-z0-9]+(?:[.%][0-9]+%?)*")


# Saved with the index: a saved index made with other tokens is rebuilt, not misread.
# v3: token ids, BM25 columns in .npy files; v4: no texts, fields as codes; v5: scores
# computed per question from counts and row lengths
TOKENS = "bigram-v5"


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
CATEGORIES = FILTER_FIELDS[1:]  # the string fields; date_int is a number per row


@dataclass(frozen=True)
class LexicalRow:
    """One chunk as the lexical index takes it in: its text is tokenised, not kept."""

    record_id: str  # the Chroma row, to fetch what only the vector store holds
    chunk_id: str
    text: str
    fields: dict  # FILTER_FIELDS


@dataclass(frozen=True)
class Categories:
    """A string per row, kept as a code into the column's distinct values: a filter
    compares the few values and gathers by code, and a row costs 4 bytes instead of a
    string (1M rows of doc ids would be hundreds of MB as strings)."""

    values: np.ndarray  # distinct strings, sorted, each used by some row
    codes: np.ndarray  # int32, one per row

    @classmethod
    def of(cls, strings: Iterable[str]) -> Categories:
        values, codes = np.unique(np.asarray(list(strings), dtype=str), return_inverse=True)
        return cls(values, codes.astype(np.int32).reshape(-1))

    def isin(self, wanted: Iterable[str]) -> np.ndarray:
        """Per row: whether its value is one of `wanted`."""
        return np.isin(self.values, list(wanted))[self.codes]

    def among(self, rows: np.ndarray) -> list[str]:
        """The distinct values of the rows where `rows` holds, sorted."""
        return self.values[np.unique(self.codes[rows])].tolist()

    def tolist(self) -> list[str]:
        return self.values[self.codes].tolist()

    def keep_and_add(self, keep: np.ndarray, added: Categories) -> Categories:
        """The rows where `keep` holds, then `added`'s, with values no row uses dropped."""
        both, inverse = np.unique(np.concatenate([self.values, added.values]), return_inverse=True)
        inverse = inverse.reshape(-1)
        codes = np.concatenate(
            [
                inverse[: len(self.values)][self.codes[keep]],
                inverse[len(self.values) :][added.codes],
            ]
        )
        used = np.bincount(codes, minlength=len(both)) > 0
        renumber = (np.cumsum(used) - 1).astype(np.int32)
        return Categories(both[used], renumber[codes])


class LexicalIndex:
    """BM25 over the chunk texts of one generation; row `i` is chunk `chunk_ids[i]`.

    Kept as token ids, not strings: a column per token listing the rows that hold it and
    the token's count in each (`indptr`, `indices`, `counts`, laid out as bm25s lays out
    its scores), and each row's length; a question scores only its tokens' columns.
    numpy arrays, saved as .npy files and mapped on load, so a big index costs little
    memory until it is read. BM25 is Lucene's variant, as bm25s computes it, and bm25s's
    tokenizer assigns the ids; the columns are built here, vectorised, because bm25s builds
    them one document at a time in Python and from scratch, and a one-document change must
    not cost a rebuild: `derive` tokenises only the new rows and merges them into the kept
    columns without sorting them again.

    The texts are tokenised, not kept (the vector store has them): what is loaded is the
    columns, the ids and the filter fields, so load and memory stay small at 1M rows.

    Immutable: a new generation gets a new index (`derive`), saved in a folder of its own,
    so a reader keeps using the one it started with while a writer publishes the next.
    """

    K1, B = 1.5, 0.75  # bm25s's defaults

    def __init__(
        self,
        record_ids: list[str],
        chunk_ids: list[str],
        dates: np.ndarray,
        fields: dict[str, Categories],
        vocab: dict[str, int],
        columns,
        lengths: np.ndarray,
    ):
        self.record_ids = record_ids
        self.chunk_ids = chunk_ids
        self.dates = dates  # date_int per row (0 = undated)
        self.fields = fields  # CATEGORIES
        self.vocab = vocab  # bigram → token id; only grows along derived indexes
        self.indptr, self.indices, self.counts = columns
        self.lengths = lengths  # tokens per row
        # BM25's length normaliser of each row, k1 × (1 − b + b × len / avg len): with the
        # idf, all a question's score needs besides the counts. Scores are not stored per
        # entry: they change with every row added (idf, avg len), and recomputing them for
        # every entry made each one-document commit cost a pass over the whole index.
        n = len(lengths)
        avg_len = float(np.mean(lengths)) if n else 1.0
        k1, b = self.K1, self.B
        self.norm = (k1 * (1 - b) + (k1 * b / (avg_len or 1.0)) * np.asarray(lengths)).astype(
            np.float32
        )
        # The answerer asks for the same tokens again and again; only the index's own
        # vocabulary is kept, so questions full of unknown bigrams cannot grow it.
        self._idf: dict[str, float] = {}

    @cached_property
    def row(self) -> dict[str, int]:
        """chunk id → row."""
        return {cid: i for i, cid in enumerate(self.chunk_ids)}

    def __len__(self) -> int:
        return len(self.chunk_ids)

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
        value = float(_idf(len(self), df))
        if tid is not None:
            self._idf[token] = value
        return value

    @classmethod
    def build(cls, rows: Sequence[LexicalRow]) -> LexicalIndex:
        empty = cls(
            [],
            [],
            np.zeros(0, np.int64),
            {name: Categories.of([]) for name in CATEGORIES},
            {},
            (np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32)),
            np.zeros(0, np.int32),
        )
        return empty.derive(set(), rows)

    def derive(self, drop_docs: set[str], new_rows: Sequence[LexicalRow]) -> LexicalIndex:
        """The next generation's index: these documents' rows gone, `new_rows` added.
        Only the new rows are tokenised; the kept rows' columns are filtered (when rows
        go) and the new entries inserted after each column's kept ones, in one pass over
        the columns (no sort of the old entries)."""
        from bm25s.tokenization import Tokenizer

        keep = ~self.fields["doc_id"].isin(drop_docs)
        kept_count = int(keep.sum())
        if kept_count == len(self):  # only additions, as a one-document ingest
            kept_ptr = np.asarray(self.indptr)
            kept_indices, kept_counts = self.indices, self.counts
        else:
            kept = keep[self.indices]
            kept_ptr = np.concatenate([[0], np.cumsum(kept)])[self.indptr]
            renumber = (np.cumsum(keep) - 1).astype(np.int32)  # old row → kept row
            kept_indices = renumber[self.indices[kept]]
            kept_counts = np.asarray(self.counts)[kept]

        vocab = dict(self.vocab)
        tokenizer = Tokenizer(lower=False, splitter=bigram_tokens, stopwords=None)
        tokenizer.word_to_id = vocab  # grows with the new rows' bigrams
        new_tokens, new_rows_of, new_counts, new_lengths = [], [], [], []
        for n, ids in enumerate(
            tokenizer.streaming_tokenize(
                [r.text for r in new_rows], update_vocab=True, allow_empty=False
            ),
            start=kept_count,
        ):
            distinct, count = np.unique(np.asarray(ids, dtype=np.int32), return_counts=True)
            new_tokens.append(distinct)
            new_counts.append(count)
            new_lengths.append(len(ids))
            new_rows_of.append(np.full(len(distinct), n, dtype=np.int32))
        n_tokens = len(vocab)
        add_tokens = np.concatenate([np.zeros(0, np.int32), *new_tokens])
        order = np.argsort(add_tokens, kind="stable")  # by token, rows ascending within
        add_tokens = add_tokens[order]
        add_rows = np.concatenate([np.zeros(0, np.int32), *new_rows_of])[order]
        add_counts = np.concatenate([np.zeros(0, np.int32), *new_counts])[order]

        # Columns of tokens new to this index start empty, after all the others.
        kept_ptr = np.concatenate(
            [kept_ptr, np.full(n_tokens + 1 - len(kept_ptr), kept_ptr[-1])]
        ).astype(np.int64)
        at = kept_ptr[add_tokens + 1]  # the end of its column's kept entries
        indices = np.insert(kept_indices, at, add_rows)  # equal positions keep their order
        counts = np.insert(kept_counts, at, add_counts)
        add_df = np.bincount(add_tokens, minlength=n_tokens)
        indptr = kept_ptr + np.concatenate([[0], np.cumsum(add_df)])
        return LexicalIndex(
            [*compress(self.record_ids, keep), *(r.record_id for r in new_rows)],
            [*compress(self.chunk_ids, keep), *(r.chunk_id for r in new_rows)],
            np.concatenate(
                [
                    np.asarray(self.dates)[keep],
                    np.asarray([int(r.fields.get("date_int") or 0) for r in new_rows], np.int64),
                ]
            ),
            {
                name: self.fields[name].keep_and_add(
                    keep, Categories.of(str(r.fields.get(name, "")) for r in new_rows)
                )
                for name in CATEGORIES
            },
            vocab,
            (indptr, indices, counts),
            np.concatenate([np.asarray(self.lengths)[keep], np.asarray(new_lengths, np.int32)]),
        )

    def scores(self, query: str, mask: np.ndarray | None = None) -> np.ndarray:
        """BM25 score of every row for `query` (zeros where `mask` is False); a bigram the
        query repeats counts as often as it is repeated, as in bm25s."""
        scores = np.zeros(len(self), dtype=np.float32)
        for token in bigram_tokens(query):
            tid = self._token_id(token)
            if tid is not None:
                a, b = self.indptr[tid], self.indptr[tid + 1]
                rows = self.indices[a:b]
                tf = self.counts[a:b].astype(np.float32)
                # Lucene BM25, as bm25s: idf × tf / (tf + k1 × (1 − b + b × len / avg len))
                scores[rows] += np.float32(self.idf(token)) * tf / (tf + self.norm[rows])
        return scores * mask if mask is not None else scores

    def coverage(self, query: str) -> np.ndarray:
        """Share of the query's distinct bigrams, weighted by idf, that each row holds.

        Read from the BM25 columns (the rows that hold each bigram), so it costs what
        BM25 costs instead of a bigram set per candidate."""
        covered = np.zeros(len(self), dtype=np.float32)
        tokens = bigram_set(query)
        mass = sum(self.idf(t) for t in tokens)
        if not len(self) or mass <= 0:
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

    _ARRAYS = ("indptr", "indices", "counts", "lengths", "dates")

    def save(self, folder: Path) -> None:
        """Write into `folder` (a new one per generation) through a temporary name, so a
        reader finds the whole index or none."""
        work = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        for name in self._ARRAYS:
            np.save(work / f"{name}.npy", np.asarray(getattr(self, name)))
        for name, column in self.fields.items():
            np.save(work / f"{name}.npy", column.codes)
        vocab = sorted(self.vocab, key=self.vocab.__getitem__)
        (work / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), "utf-8")
        ids = {
            "record_ids": self.record_ids,
            "chunk_ids": self.chunk_ids,
            "values": {name: column.values.tolist() for name, column in self.fields.items()},
        }
        (work / "ids.json").write_text(json.dumps(ids, ensure_ascii=False), "utf-8")
        meta = {"tokens": TOKENS, "rows": len(self)}  # written last: the folder is whole
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
        ids = json.loads((folder / "ids.json").read_text("utf-8"))
        indptr, indices, counts, lengths, dates = (
            np.load(folder / f"{name}.npy", mmap_mode="r") for name in cls._ARRAYS
        )
        fields = {
            name: Categories(
                np.asarray(values, dtype=str), np.load(folder / f"{name}.npy", mmap_mode="r")
            )
            for name, values in ids["values"].items()
        }
        return cls(
            ids["record_ids"],
            ids["chunk_ids"],
            dates,
            fields,
            {t: i for i, t in enumerate(vocab)},
            (indptr, indices, counts),
            lengths,
        )


def _idf(n_rows: int, df):
    """Lucene's BM25 idf, as bm25s has it."""
    return np.log(1 + (n_rows - df + 0.5) / (df + 0.5))
