"""A tiny synthetic corpus with known structure, for the embedding trainers."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from kinpath.embeddings.corpus import Corpus, build_corpus
from kinpath.embeddings.tokenize import ReportTokenizer

# Two topic clusters; within each, words co-occur. "alpha"/"omega" sit in
# different clusters, so word2vec keeps them apart; a graph pair joins them.
CLUSTERS = [
    ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"],
    ["omega", "psi", "chi", "phi", "upsilon", "tau", "sigma", "rho"],
]
FILLER = ["the", "of", "and", "in", "with", "is"]


def synthetic_reports(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = rng.choice(CLUSTERS)
        text = ". ".join(
            " ".join(
                rng.choice(words) if rng.random() < 0.7 else rng.choice(FILLER) for _ in range(12)
            )
            for _ in range(6)
        )
        rows.append({"report_id": f"r{i}", "text": text + ".", "split": "train"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    d = tmp_path_factory.mktemp("corpus")
    synthetic_reports().to_csv(d / "reports.csv", index=False)
    c, _ = build_corpus(d / "reports.csv", ReportTokenizer(config=None), d / "out")
    return c
