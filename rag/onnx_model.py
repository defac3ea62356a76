"""The embedding model as an ONNX graph, run by ONNX Runtime (`RAG_EMBED_BACKEND=onnx`) or
OpenVINO (`openvino`, the default).

Exported once, offline, from the sentence-transformers folder (torch is only needed for
that), then run with a `tokenizers` tokenizer and a runtime session. Why: a session run
is one C++ call that lets go of the GIL for all of it, where a torch forward pass comes
back to Python between its ~200 operations and so waits behind every other request
thread of a busy server. On 2 cores ONNX Runtime embeds a question in 5.5 ms (torch:
15 ms) and 8 questions in 26 ms (56 ms), with the same vectors (largest difference 1e-7).
OpenVINO reads the same graph and, on a CPU with native bfloat16 (AVX512-BF16, AMX),
runs its matrix products in bfloat16 with float32 sums: 1.75× ONNX Runtime on passages
with vectors at cosine 0.99999 to float32 (bench/README.md, "Embedding backends").
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import threading
import warnings
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

EXPORT_VERSION = 1  # bump when the exported graph or pipeline.json changes
_PIPELINE = "pipeline.json"
_GRAPH = "model.onnx"
# What an export depends on in a local model folder: a change to any of them exports again.
_SOURCES = (
    "model.safetensors",
    "pytorch_model.bin",
    "tokenizer.json",
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
)
_ERROR_MARK = "ONNX-EXPORT-ERROR: "  # the child's one line for the parent


class ExportError(RuntimeError):
    """The model cannot be exported to or run on ONNX; the message says what to do."""


@dataclass(frozen=True)
class Pipeline:
    """What the exported graph needs around it: written beside it at export time."""

    pooling: str  # "mean" or "cls"
    max_seq_length: int
    pad_id: int
    pad_token: str
    source: str  # the weights it was exported from; another fingerprint means export again
    version: int = EXPORT_VERSION


def fingerprint(model_path: str) -> str:
    """For a local folder, the size and mtime of the files an export depends on (not the
    path: the same folder reached by another spelling is the same model); for a Hugging
    Face id, the id (an updated cache is not noticed: export again by deleting rag-onnx/)."""
    folder = Path(model_path).expanduser()
    if not folder.is_dir():
        return model_path
    return "|".join(
        f"{name}:{(folder / name).stat().st_size}:{(folder / name).stat().st_mtime_ns}"
        for name in _SOURCES
        if (folder / name).is_file()
    )


def exported(out_dir: Path, model_path: str) -> bool:
    try:
        pipeline = json.loads((out_dir / _PIPELINE).read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return (
        pipeline.get("version") == EXPORT_VERSION
        and pipeline.get("source") == fingerprint(model_path)
        and (out_dir / _GRAPH).is_file()
        and (out_dir / "tokenizer.json").is_file()
    )


def ensure_export(model_path: str, out_dir: Path) -> bool:
    """Export unless a current export is there; True when this call exported. One process
    at a time per folder (a server's two model instances, `rag ingest` beside it): the
    others wait on the lock and then find the export made."""
    if exported(out_dir, model_path):
        return False
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(out_dir.parent / f".{out_dir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if exported(out_dir, model_path):
            return False
        for stale in out_dir.parent.glob(f"{out_dir.name}.tmp-*"):  # left by a killed export
            shutil.rmtree(stale, ignore_errors=True)
        export_in_subprocess(model_path, out_dir)
        return True


def export(model_path: str, out_dir: Path) -> None:
    """Export the sentence-transformers model at `model_path` (a folder or a cached
    Hugging Face id; never downloaded) into `out_dir`: the transformer's token vectors as
    an ONNX graph, its tokenizer, and the pooling in `pipeline.json`. Written to a
    temporary folder first, so a killed export leaves nothing that looks finished."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        model = SentenceTransformer(model_path, device="cpu", local_files_only=True)
    except (OSError, ValueError) as err:
        raise ExportError(
            f"cannot load embedding model {model_path!r} offline: {err}. "
            "Set RAG_EMBEDDING_MODEL to a local folder or a model in the Hugging Face cache."
        ) from err
    modules = list(model)
    pooling = modules[1] if len(modules) > 1 else None
    if not (
        isinstance(modules[0], Transformer)
        and isinstance(pooling, Pooling)
        and pooling.pooling_mode in ("mean", "cls")
        and pooling.include_prompt  # a pooling that skips the prompt tokens is not ours
        and all(isinstance(m, Normalize) for m in modules[2:])
    ):
        raise ExportError(
            f"RAG_EMBED_BACKEND=onnx runs a transformer with mean or CLS pooling; "
            f"{model_path!r} is {[type(m).__name__ for m in modules]}. Set RAG_EMBED_BACKEND=torch."
        )
    transformer = modules[0].auto_model.eval()

    class TokenVectors(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids, attention_mask):
            return self.transformer(
                input_ids=input_ids, attention_mask=attention_mask
            ).last_hidden_state

    tokenizer = model.tokenizer
    sample = tokenizer(["示例", "一个更长一点的示例句子"], padding=True, return_tensors="pt")
    work = out_dir.with_name(f"{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        dynamic = {0: "batch", 1: "tokens"}
        # The tracer warns about every shape-dependent branch of the model's Python code:
        # expected for a trace with dynamic axes, and nothing a user can act on.
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                TokenVectors(),
                (sample["input_ids"], sample["attention_mask"]),
                str(work / _GRAPH),
                input_names=["input_ids", "attention_mask"],
                output_names=["token_vectors"],
                dynamic_axes={
                    "input_ids": dynamic,
                    "attention_mask": dynamic,
                    "token_vectors": dynamic,
                },
                opset_version=17,
                dynamo=False,  # the TorchScript exporter: no onnxscript, same graph every time
            )
        tokenizer.save_pretrained(str(work))
        if not (work / "tokenizer.json").is_file():
            raise ExportError(
                f"{model_path!r} has no fast tokenizer (tokenizer.json), which "
                "RAG_EMBED_BACKEND=onnx needs. Set RAG_EMBED_BACKEND=torch."
            )
        pipeline = Pipeline(
            pooling=pooling.pooling_mode,
            max_seq_length=int(model.max_seq_length),
            pad_id=int(tokenizer.pad_token_id),
            pad_token=str(tokenizer.pad_token),
            source=fingerprint(model_path),
        )
        (work / _PIPELINE).write_text(json.dumps(asdict(pipeline), indent=2), "utf-8")
        shutil.rmtree(out_dir, ignore_errors=True)  # our own folder: a stale export
        os.replace(work, out_dir)
    except Exception as err:
        shutil.rmtree(work, ignore_errors=True)
        if isinstance(err, ExportError):
            raise
        raise ExportError(
            f"exporting {model_path!r} to ONNX failed: {err}. Set RAG_EMBED_BACKEND=torch."
        ) from err


def export_in_subprocess(model_path: str, out_dir: Path) -> None:
    """`export` in a child process: tracing loads torch and a second copy of the model
    (2.6 GiB at its peak for e5-small), which a long-running server would otherwise keep."""
    done = subprocess.run(
        [sys.executable, "-m", "rag.onnx_model", model_path, str(out_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode == 0:
        return
    marked = [ln for ln in done.stderr.splitlines() if ln.startswith(_ERROR_MARK)]
    if marked:
        raise ExportError(marked[-1].removeprefix(_ERROR_MARK))
    if done.returncode < 0:
        raise ExportError(
            f"exporting {model_path!r} to ONNX: the exporting process was killed by signal "
            f"{-done.returncode} (out of memory?). Set RAG_EMBED_BACKEND=torch to skip it."
        )
    last = done.stderr.strip().splitlines()[-1:] or ["no message"]
    raise ExportError(f"exporting {model_path!r} to ONNX failed: {last[0]}")


class OnnxEncoder:
    """Token vectors and pooled unit vectors from an exported folder, on ONNX Runtime.
    Thread-safe: the tokenizer is configured once here and only read after; a session
    may run from several threads."""

    def __init__(self, folder: Path):
        from tokenizers import Tokenizer

        pipeline = json.loads((folder / _PIPELINE).read_text("utf-8"))
        self.pipeline = Pipeline(**pipeline)
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.pipeline.max_seq_length)
        self.tokenizer.enable_padding(
            pad_id=self.pipeline.pad_id, pad_token=self.pipeline.pad_token
        )
        self._open(folder / _GRAPH)

    def _open(self, graph: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = len(os.sched_getaffinity(0))  # the CPUs we may use
        options.inter_op_num_threads = 1
        # Idle pool threads sleep instead of spinning: between runs a spinning thread
        # burnt ~¾ of a core that the request threads needed (8 clients: 70 → 87 req/s).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only: no per-node warnings in the server log
        self.session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        (vectors,) = self.session.run(None, {"input_ids": ids, "attention_mask": mask})
        return vectors

    def token_vectors(self, texts: list[str]):
        """(token vectors [texts, tokens, dim], attention mask, the tokenizer's encodings)."""
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return self._run(ids, mask), mask, encodings

    def pool(self, vectors: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.pipeline.pooling == "cls":
            pooled = vectors[:, 0]
        else:
            weights = mask[..., None].astype(np.float32)
            pooled = (vectors * weights).sum(axis=1) / weights.sum(axis=1).clip(1e-9)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True).clip(1e-12)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit vectors, one per text, in one run (the caller batches)."""
        vectors, mask, _ = self.token_vectors(texts)
        return self.pool(vectors, mask)


class OpenVinoEncoder(OnnxEncoder):
    """The same graph on OpenVINO's CPU plugin, at the precision it picks for this CPU:
    bfloat16 where the CPU computes it natively, else float32 (`precision` says which).
    One run at a time per encoder: the caller (`LazyEmbeddings`) already serialises them,
    and OpenVINO lets go of the GIL while it runs."""

    def _open(self, graph: Path) -> None:
        self.shared = _openvino_model(str(graph))
        self.compiled = self.shared.model
        self.precision = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        self.request = self.compiled.create_infer_request()

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        # One inference at a time per compiled model, whichever encoder asks: the server's
        # warm-up and its ingest worker, each in an infer request of its own on the same
        # compiled model, hung inside `infer` one restart in two (issue 32).
        with self.shared.lock:
            self.request.infer({"input_ids": ids, "attention_mask": mask})
            # A copy: the request's output buffer is reused by the next run.
            return np.array(self.request.get_output_tensor(0).data, dtype=np.float32)


@dataclass(frozen=True)
class CompiledModel:
    """A compiled OpenVINO model and the lock its inferences run under."""

    model: object
    lock: threading.Lock


_COMPILING = threading.Lock()  # lru_cache alone would let two threads compile at once


def _openvino_model(graph: str) -> CompiledModel:
    with _COMPILING:
        return _compile_openvino(graph)


@lru_cache(maxsize=4)
def _compile_openvino(graph: str) -> CompiledModel:
    """One compiled model per graph in a process, shared by its encoders (a server's
    reader and writer): each compiled copy of e5-small holds ~600 MiB (measured).
    Compiled from the path, not from a model read first: that kept ~350 MiB more alive.

    The compiled model is cached beside the graph (OpenVINO's CACHE_DIR, ~450 MB for
    e5-small, keyed by OpenVINO on the graph, the settings and this CPU), so every later
    process start loads it in ~0.3 s instead of compiling for 2–6 s; where the folder is
    not writable it is compiled each time."""
    import openvino as ov

    config = {
        "INFERENCE_NUM_THREADS": len(os.sched_getaffinity(0)),
        "PERFORMANCE_HINT": "LATENCY",  # one stream: one batch uses every core
    }
    folder = Path(graph).parent
    if os.access(folder, os.W_OK):
        config["CACHE_DIR"] = str(folder / "openvino-cache")
    return CompiledModel(ov.Core().compile_model(graph, "CPU", config), threading.Lock())


ENCODERS = {"onnx": OnnxEncoder, "openvino": OpenVinoEncoder}


if __name__ == "__main__":  # export_in_subprocess: python -m rag.onnx_model MODEL OUT_DIR
    try:
        export(sys.argv[1], Path(sys.argv[2]))
    except ExportError as err:
        print(_ERROR_MARK + " ".join(str(err).split()), file=sys.stderr)
        sys.exit(1)
