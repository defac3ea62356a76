"""Embeddings: the one module that owns the embedding model, as an ONNX graph on OpenVINO or
ONNX Runtime (rag.onnx_model), or on sentence-transformers.

The model loads on first use, not on construction, so an ingest with nothing to embed
and a process that never queries do not pay for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from langchain_core.embeddings import Embeddings

from rag import e5_bundle, onnx_model
from rag.e5_bundle import BUNDLED_E5

log = logging.getLogger(__name__)

BACKENDS = ("openvino", "onnx", "torch")


def model_slug(model: str) -> str:
    """A short, filesystem- and collection-name-safe name for a model setting."""
    name = model.split(":", 1)[1] if model == BUNDLED_E5 else model.rstrip("/").split("/")[-1]
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()[:40] or "model"


def resolve_model_path(model: str, data_dir: Path) -> str:
    """The bundled e5 is materialised under the data dir once; anything else is passed to
    sentence-transformers as a Hugging Face id or a local folder."""
    if model == BUNDLED_E5:
        return str(e5_bundle.materialise(data_dir / "models" / model_slug(model)))
    return model


def default_prefixes(model: str) -> tuple[str, str]:
    """e5 models were trained with `query: ` / `passage: `; others get none unless set."""
    return ("query: ", "passage: ") if "e5" in model.lower() else ("", "")


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


QUERY_BATCH = 16  # questions embedded in one forward pass at the most

_RERANK_HINT = (
    "Set RAG_RERANK_MODEL to a local sentence-transformers CrossEncoder folder, or empty to "
    "rerank nothing."
)


def load_cross_encoder(model: str):
    """A sentence-transformers `CrossEncoder` from a local folder (or the Hugging Face
    cache), never from the network; a clear `RuntimeError` when it is not there."""
    from sentence_transformers import CrossEncoder

    _quiet_transformers()
    if model.startswith(("/", ".", "~")) and not Path(model).expanduser().is_dir():
        # A path, not a Hugging Face id: sentence-transformers would call it a bad repo id.
        raise RuntimeError(f"reranker folder {model!r} does not exist. {_RERANK_HINT}")
    try:
        return CrossEncoder(model, device="cpu", local_files_only=True)
    except (OSError, ValueError) as err:
        raise RuntimeError(
            f"cannot load reranker {model!r} offline: {str(err).rstrip('.')}. {_RERANK_HINT}"
        ) from err


def pool_spans(
    tokens: np.ndarray,
    token_chars: Sequence[tuple[int, int]],
    spans: Sequence[tuple[int, int]],
    offset: int,
    fallback: np.ndarray,
) -> np.ndarray:
    """Mean of the token vectors whose characters lie in each span, L2-normalised.

    `token_chars` are the tokenizer's (start, end) character offsets in the prefixed
    text, `offset` the prefix length; special tokens have empty offsets and are skipped.
    A span with no token of its own (it can happen at a truncated tail) gets `fallback`.
    """
    starts = np.array([a for a, _ in token_chars]) - offset
    ends = np.array([b for _, b in token_chars]) - offset
    real = ends > starts
    out = np.empty((len(spans), tokens.shape[1]), dtype=np.float32)
    for i, (lo, hi) in enumerate(spans):
        inside = real & (ends > lo) & (starts < hi)
        vec = tokens[inside].mean(axis=0) if inside.any() else fallback
        out[i] = vec / max(float(np.linalg.norm(vec)), 1e-12)
    return out


def onnx_folder(model_path: str, model: str, data_dir: Path) -> Path:
    """Where the ONNX export of a model lives: in a `rag-onnx/` folder of our own inside a
    local model folder we may write to (one export for every data dir that uses that
    folder; the bundled model is materialised per data dir, so it is exported per data
    dir), else under the data dir."""
    folder = Path(model_path).expanduser()
    if folder.is_dir() and os.access(folder, os.W_OK):
        return folder / "rag-onnx"
    return data_dir / "models" / model_slug(model) / "rag-onnx"


def _torch_encode(model, texts: list[str], prefix: str) -> np.ndarray:
    """Unit vectors for short texts in one forward pass. `encode` would give the same
    vectors but also walks every module on each call (`eval()`, the device): ~3 ms that
    holds the GIL, a tenth of a whole answer."""
    import torch

    with torch.inference_mode():
        features = model.preprocess(texts, prompt=prefix)
        vectors = model(features)["sentence_embedding"]
        return torch.nn.functional.normalize(vectors, p=2, dim=1).numpy()


class InFlight:
    """Calls in progress and since when: a call that neither returns nor fails (a model
    that hangs inside its runtime) shows as a growing `oldest()`, which liveness reads."""

    def __init__(self):
        self._lock = threading.Lock()
        self._started: dict[int, float] = {}
        self._next = 0

    @contextlib.contextmanager
    def one(self) -> Iterator[None]:
        with self._lock:
            token, self._next = self._next, self._next + 1
            self._started[token] = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                del self._started[token]

    def oldest(self) -> float:
        """Seconds the longest call in progress has taken so far (0 when none is)."""
        with self._lock:
            first = min(self._started.values(), default=None)
        return 0.0 if first is None else time.monotonic() - first


@dataclass
class _Query:
    text: str
    vector: list[float] | None = None
    error: BaseException | None = None
    done: bool = False


class LazyEmbeddings(Embeddings):
    """A langchain `Embeddings` over the configured backend, loaded on first use: the model
    exported to ONNX once and run by OpenVINO (`openvino`) or ONNX Runtime (`onnx`), or
    sentence-transformers (`torch`). The same vectors (float32: within 1e-7; OpenVINO in
    bfloat16: cosine 0.99999); on 2 cores ONNX Runtime embeds a passage 1.25× faster than
    torch, OpenVINO in bfloat16 1.75× faster than ONNX Runtime."""

    def __init__(
        self,
        model: str,
        data_dir: Path,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        batch_size: int = 32,
        backend: str = "openvino",
    ):
        if backend not in BACKENDS:
            raise ValueError(f"unknown embedding backend {backend!r}; use one of {BACKENDS}")
        default_query, default_passage = default_prefixes(model)
        self.model = model
        self.data_dir = data_dir
        self.query_prefix = default_query if query_prefix is None else query_prefix
        self.passage_prefix = default_passage if passage_prefix is None else passage_prefix
        self.batch_size = batch_size
        self.backend = backend
        self._impl = None
        self._lock = threading.Lock()
        # One caller at a time: a fast tokenizer used from two threads at once fails with
        # "Already borrowed", and two forward passes on 2 cores only slow each other.
        self._busy = threading.Lock()
        self._queries: list[_Query] = []  # questions waiting for the model
        self._queries_lock = threading.Lock()
        self.calls = InFlight()  # how long the oldest call has been waiting or running

    @property
    def loaded(self) -> bool:
        return self._impl is not None

    def _model(self):
        """The loaded backend: an `OnnxEncoder` or a `SentenceTransformer`."""
        with self._lock:
            if self._impl is None:
                path = resolve_model_path(self.model, self.data_dir)
                self._impl = (
                    self._load_torch(path) if self.backend == "torch" else self._load_onnx(path)
                )
        return self._impl

    def _load_onnx(self, path: str):
        folder = onnx_folder(path, self.model, self.data_dir)
        try:
            if onnx_model.ensure_export(path, folder):
                log.info("exported embedding model %s to ONNX in %s (once)", self.model, folder)
        except onnx_model.ExportError as err:
            raise RuntimeError(str(err)) from err
        try:
            encoder = onnx_model.ENCODERS[self.backend](folder)
        except ImportError as err:
            raise RuntimeError(
                f"RAG_EMBED_BACKEND={self.backend} needs {err.name!r}, which is not "
                "installed; reinstall policy-rag or set RAG_EMBED_BACKEND=onnx"
            ) from err
        if self.backend == "openvino":
            log.info("embedding model %s on OpenVINO in %s", self.model, encoder.precision)
        return encoder

    def _load_torch(self, path: str):
        from sentence_transformers import SentenceTransformer

        _quiet_transformers()
        try:
            # Air-gapped sites: never reach for the network; a model that is not on disk
            # fails at once with a clear message instead of hanging on a download.
            model = SentenceTransformer(path, device="cpu", local_files_only=True)
        except OSError as err:
            raise RuntimeError(
                f"cannot load embedding model {self.model!r} offline: {err}. "
                "Set RAG_EMBEDDING_MODEL to a local folder or a model in the Hugging Face cache."
            ) from err
        return model.eval()  # inference only; `_torch_encode` calls the model directly

    def _encode(self, model, texts: list[str], prefix: str) -> np.ndarray:
        """Unit vectors for `texts` in one forward pass (the caller holds `_busy`)."""
        if self.backend != "torch":
            return model.encode([prefix + t for t in texts])
        return _torch_encode(model, texts, prefix)

    def embed_chunks(
        self, texts: Sequence[str], sentence_spans: Sequence[Sequence[tuple[int, int]]]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Chunk vectors and, from the same forward pass, one vector per sentence.

        A sentence vector is the mean of the chunk's token embeddings that fall inside the
        sentence ("late chunking"): the sentence is read in its chunk's context, at no
        extra model cost. On rgb-dev it ranks passages better than the chunk vector alone
        and better than embedding each sentence on its own (see bench/README.md).
        """
        with self.calls.one():
            model = self._model()
            with self._busy:
                if self.backend != "torch":
                    return self._onnx_chunks(model, texts, sentence_spans)
                return self._torch_chunks(model, texts, sentence_spans)

    def _length_batches(self, texts: Sequence[str]) -> Iterator[list[int]]:
        """Indices of `texts` in runs of `batch_size`, shortest first: similar lengths in
        one run leave less padding to compute."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            yield order[start : start + self.batch_size]

    def _onnx_chunks(self, encoder, texts, sentence_spans):
        chunk_vectors: list[np.ndarray] = [np.empty(0)] * len(texts)
        sentence_vectors: list[np.ndarray] = [np.empty(0)] * len(texts)
        offset = len(self.passage_prefix)
        for batch in self._length_batches(texts):
            vectors, mask, encodings = encoder.token_vectors(
                [self.passage_prefix + texts[i] for i in batch]
            )
            pooled = encoder.pool(vectors, mask)
            for row, i in enumerate(batch):
                n_tokens = int(mask[row].sum())
                chunk_vectors[i] = pooled[row]
                sentence_vectors[i] = pool_spans(
                    vectors[row, :n_tokens],
                    encodings[row].offsets[:n_tokens],
                    sentence_spans[i],
                    offset,
                    pooled[row],
                )
        return np.stack(chunk_vectors).astype(np.float32), sentence_vectors

    def _torch_chunks(self, model, texts, sentence_spans):
        outputs = model.encode(
            list(texts),
            prompt=self.passage_prefix,
            batch_size=self.batch_size,
            output_value=None,
            convert_to_numpy=False,
        )
        chunk_vectors = np.stack([o["sentence_embedding"].float().numpy() for o in outputs])
        chunk_vectors /= np.linalg.norm(chunk_vectors, axis=1, keepdims=True).clip(1e-12)
        offset = len(self.passage_prefix)
        sentence_vectors = []
        for text, spans, out, chunk_vec in zip(
            texts, sentence_spans, outputs, chunk_vectors, strict=True
        ):
            tokens = out["token_embeddings"].float().numpy()
            n_tokens = int(out["attention_mask"].sum())
            char_spans = model.tokenizer(
                self.passage_prefix + text,
                return_offsets_mapping=True,
                truncation=True,
                max_length=model.max_seq_length,
            )["offset_mapping"]
            sentence_vectors.append(
                pool_spans(tokens[:n_tokens], char_spans, spans, offset, chunk_vec)
                if len(char_spans) == n_tokens
                else np.tile(chunk_vec, (len(spans), 1))
            )
        return chunk_vectors, sentence_vectors

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        with self.calls.one():
            return self._embed_documents(texts)

    def _embed_documents(self, texts: list[str]) -> list[list[float]]:
        model = self._model()
        vectors: list[list[float]] = [[]] * len(texts)
        with self._busy:
            for batch in self._length_batches(texts):
                encoded = self._encode(model, [texts[i] for i in batch], self.passage_prefix)
                for i, vector in zip(batch, encoded, strict=True):
                    vectors[i] = vector.tolist()
        return vectors

    def embed_query(self, text: str) -> list[float]:
        """The question's vector. Questions that arrive while the model is busy are
        embedded together by whichever caller gets the model next: on 2 cores a batch of
        8 short questions takes ~26 ms where 8 one at a time take ~44 ms (ONNX)."""
        with self.calls.one():
            return self._embed_query(text)

    def _embed_query(self, text: str) -> list[float]:
        model = self._model()
        query = _Query(text)
        with self._queries_lock:
            self._queries.append(query)
        while not query.done:
            with self._busy:
                if query.done:  # another caller embedded it with its batch
                    break
                with self._queries_lock:
                    batch = self._queries[:QUERY_BATCH]
                    del self._queries[:QUERY_BATCH]
                try:
                    vectors = self._encode(model, [q.text for q in batch], self.query_prefix)
                    for q, vector in zip(batch, vectors, strict=True):
                        q.vector = vector.tolist()
                except BaseException as exc:  # each caller raises its own question's error
                    for q in batch:
                        q.error = exc
                finally:
                    for q in batch:
                        q.done = True
        if query.error is not None:
            raise query.error
        return query.vector  # type: ignore[return-value]
