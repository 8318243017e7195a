import numpy as np
import pandas as pd

from kinpath.embeddings.corpus import Corpus
from kinpath.embeddings.joint import JointConfig, train_kg_joint
from kinpath.embeddings.word2vec import Word2VecConfig

W2V = Word2VecConfig(vector_size=32, min_count=1, epochs=5, workers=1, sample=0)
PAIRS = pd.DataFrame(
    {
        "a": ["alpha"],
        "b": ["omega"],
        "weight": [1.0],
        "rel": ["SY"],
        "hops": [0],
        "cui_a": ["X"],
        "cui_b": ["X"],
    }
)


def _cos(u: np.ndarray, v: np.ndarray) -> float:
    return float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))


def test_regularizer_pulls_pairs_and_leaves_the_rest(corpus: Corpus) -> None:
    plain, _ = train_kg_joint(corpus, PAIRS, W2V, JointConfig(lam=0.0), seed=1)
    infused, _ = train_kg_joint(corpus, PAIRS, W2V, JointConfig(lam=40.0), seed=1)
    # the connected pair, in different topic clusters, ends up much closer
    assert _cos(infused["alpha"], infused["omega"]) > _cos(plain["alpha"], plain["omega"]) + 0.3
    # unconnected words stay where word2vec put them (within tolerance)
    for w in ("beta", "gamma", "psi", "chi", "the"):
        assert _cos(infused[w], plain[w]) > 0.9, w


def test_lambda_zero_is_word2vec(corpus: Corpus) -> None:
    a, _ = train_kg_joint(corpus, PAIRS, W2V, JointConfig(lam=0.0), seed=1)
    b, _ = train_kg_joint(corpus, PAIRS.iloc[:0], W2V, JointConfig(lam=40.0), seed=1)
    np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-6)  # no pairs or λ=0: same training
