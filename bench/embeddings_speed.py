"""Benchmark: kg-joint against plain gensim word2vec, same settings, same corpus.

Builds a corpus of at least ``--tokens`` tokens (default 5 M): the TCGA train
split tokenized and repeated when ``../shared/data`` is there, otherwise
synthetic sentences over a Zipf-distributed vocabulary, and a set of weighted
pairs (the real graph's pairs, or random pairs among frequent words). Then, in
one run, times

* baseline: gensim ``Word2Vec`` ``build_vocab`` + ``train`` over the corpus file;
* kg-joint: :func:`kinpath.embeddings.joint.train_kg_joint` with the same settings;

and prints words per second of each and their ratio. Target: kg-joint ≥ 0.9 ×
gensim.

    python bench/embeddings_speed.py --tokens 5000000 --epochs 2
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from kinpath.embeddings.corpus import Corpus, open_corpus
from kinpath.embeddings.joint import JointConfig, train_kg_joint
from kinpath.embeddings.word2vec import Word2VecConfig, new_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def synthetic_corpus(path: Path, tokens: int, vocab: int = 20_000, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    ranks = np.minimum(rng.zipf(1.2, size=tokens), vocab) - 1
    lengths = rng.integers(5, 25, size=tokens // 5)
    with open(path, "w") as f:
        i = 0
        for n in lengths:
            if i >= tokens:
                break
            f.write(" ".join(f"w{r}" for r in ranks[i : i + n]) + "\n")
            i += n


def tcga_corpus(path: Path, tokens: int, work: Path) -> pd.DataFrame:
    from kinpath.embeddings.train import prepare
    from kinpath.kg.graph import build_graph

    build_graph(work / "g", umls_dirs=[SHARED / "kg" / "nci-icdo-meta"])
    prep = prepare(
        SHARED / "tcga-reports" / "reports.csv", work / "c", work / "g", 42,
        where={"split": "train"}, heldout_fraction=0.0,
    )  # fmt: skip
    text = prep.corpus.path.read_text()
    with open(path, "w") as f:
        for _ in range(-(-tokens // prep.corpus.tokens)):
            f.write(text)
    return prep.pairs


def random_pairs(corpus: Corpus, n: int = 3000, seed: int = 0) -> pd.DataFrame:
    words = [w for w, _ in corpus.vocabulary().most_common(5000)]
    rng = np.random.default_rng(seed)
    a, b = rng.choice(words, n), rng.choice(words, n)
    return pd.DataFrame({"a": a, "b": b, "weight": rng.uniform(0.25, 1.0, n), "rel": "RO"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=5_000_000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--vector-size", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--synthetic", action="store_true", help="ignore ../shared even if present")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cfg = Word2VecConfig(vector_size=a.vector_size, epochs=a.epochs, workers=a.workers)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sentences.txt"
        if SHARED.is_dir() and not a.synthetic:
            pairs = tcga_corpus(path, a.tokens, Path(tmp))
            source = "TCGA train split, repeated"
        else:
            synthetic_corpus(path, a.tokens)
            pairs = None
            source = "synthetic Zipf corpus"
        corpus = open_corpus(path)
        if pairs is None:
            pairs = random_pairs(corpus)
        print(f"corpus: {source}, {corpus.tokens:,} tokens; {len(pairs):,} pairs; {cfg}")

        t = time.perf_counter()
        model = new_model(cfg, seed=1)
        model.build_vocab(corpus_iterable=corpus)
        model.train(corpus_iterable=corpus, total_examples=model.corpus_count, epochs=cfg.epochs)
        gensim_s = time.perf_counter() - t

        t = time.perf_counter()
        train_kg_joint(corpus, pairs, cfg, JointConfig(), seed=1)
        joint_s = time.perf_counter() - t

    words = corpus.tokens * cfg.epochs
    result = {
        "tokens": corpus.tokens,
        "epochs": cfg.epochs,
        "gensim_words_per_s": round(words / gensim_s),
        "kg_joint_words_per_s": round(words / joint_s),
        "ratio_kg_joint_vs_gensim": round(gensim_s / joint_s, 3),
        "target_met": gensim_s / joint_s >= 0.9,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
