from pathlib import Path

import numpy as np
import pandas as pd
from gensim.models import KeyedVectors

from kinpath.embeddings.evaluate import heldout_recall, umnsrs


def _kv(words: list[str], vecs: list[list[float]]) -> KeyedVectors:
    kv = KeyedVectors(vector_size=len(vecs[0]))
    kv.add_vectors(words, np.array(vecs, dtype=np.float32))
    return kv


def test_heldout_recall_counts_both_directions() -> None:
    kv = _kv(["a", "b", "c"], [[1, 0], [0.9, 0.1], [-1, 0]])
    pairs = pd.DataFrame({"a": ["a", "a", "x"], "b": ["b", "c", "a"]})
    recall, n = heldout_recall(kv, pairs, k=1)
    assert n == 2  # the pair with an unknown word is not evaluable
    assert recall == 0.5  # a↔b found both ways, a↔c neither


def test_umnsrs_spearman_and_coverage(tmp_path: Path) -> None:
    kv = _kv(
        ["lung_cancer", "carcinoma", "tumor", "aspirin"],
        [[1, 0], [0.9, 0.2], [0.7, 0.7], [-1, 0.1]],
    )
    p = tmp_path / "u.csv"
    pd.DataFrame(
        {"Mean": [1500, 1000, 100, 50], "Stdev": 0, "CUI1": "", "CUI2": "",
         "Term1": ["Lung cancer", "Lung cancer", "Lung cancer", "Warfarin"],
         "Term2": ["Carcinoma", "Tumor", "Aspirin", "Aspirin"]}
    ).to_csv(p, index=False)  # fmt: skip
    s = umnsrs(kv, p)
    assert (s.covered, s.total) == (3, 4) and s.spearman == 1.0
