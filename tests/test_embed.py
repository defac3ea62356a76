import numpy as np

from rag.e5_bundle import BUNDLED_E5
from rag.embed import default_prefixes, model_slug, pool_spans


def test_pool_spans_averages_the_tokens_inside_each_span():
    tokens = np.array([[9.0, 9.0], [1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [9.0, 9.0]])
    # offsets in "passage: " + text; specials (0, 0) are skipped
    chars = [(0, 0), (9, 11), (11, 13), (13, 15), (0, 0)]
    out = pool_spans(tokens, chars, [(0, 4), (4, 6)], offset=9, fallback=np.array([1.0, 0.0]))
    np.testing.assert_allclose(out[0], [1.0, 0.0])  # mean of [1,0] and [3,0], normalised
    np.testing.assert_allclose(out[1], [0.0, 1.0])


def test_a_span_without_tokens_gets_the_fallback():
    out = pool_spans(np.ones((1, 2)), [(0, 0)], [(0, 3)], offset=9, fallback=np.array([0.0, 2.0]))
    np.testing.assert_allclose(out[0], [0.0, 1.0])


def test_model_names_and_prefixes():
    assert model_slug(BUNDLED_E5) == "multilingual-e5-small"
    assert model_slug("BAAI/bge-small-zh-v1.5") == "bge-small-zh-v1-5"
    assert default_prefixes("intfloat/multilingual-e5-base") == ("query: ", "passage: ")
    assert default_prefixes("BAAI/bge-small-zh-v1.5") == ("", "")
