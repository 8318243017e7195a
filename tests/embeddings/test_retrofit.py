import numpy as np
import pandas as pd
from gensim.models import KeyedVectors

from kinpath.embeddings.retrofit import RetrofitConfig, retrofit


def _kv() -> KeyedVectors:
    kv = KeyedVectors(vector_size=4)
    rng = np.random.default_rng(0)
    kv.add_vectors(["a", "b", "c", "d"], rng.normal(size=(4, 4)).astype(np.float32))
    return kv


PAIRS = pd.DataFrame({"a": ["a", "a"], "b": ["b", "z"], "weight": [1.0, 1.0], "rel": ["SY", "PAR"]})


def test_zero_weight_is_identity() -> None:
    kv = _kv()
    for cfg in (RetrofitConfig(beta=0.0), RetrofitConfig(relation_weights={"SY": 0.0, "PAR": 0.0})):
        out = retrofit(kv, PAIRS, cfg)
        assert out.index_to_key == kv.index_to_key
        np.testing.assert_array_equal(out.vectors, kv.vectors)


def test_pulls_pairs_together_and_leaves_others() -> None:
    kv = _kv()
    before = kv.vectors.copy()
    out = retrofit(kv, PAIRS, RetrofitConfig(iterations=10))
    assert np.linalg.norm(out["a"] - out["b"]) < 0.5 * np.linalg.norm(kv["a"] - kv["b"])
    np.testing.assert_array_equal(out["c"], kv["c"])
    np.testing.assert_array_equal(kv.vectors, before)  # input not mutated
    assert "z" not in out


def test_add_missing_gives_graph_terms_a_vector() -> None:
    kv = _kv()
    out = retrofit(kv, PAIRS, RetrofitConfig(add_missing=True, iterations=20))
    assert "z" in out
    # z has one neighbour, a, and no vector of its own: it lands on a
    np.testing.assert_allclose(out["z"], out["a"], atol=1e-3)
