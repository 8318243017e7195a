"""kg-joint: word2vec trained together with a knowledge-graph regularizer.

The objective is the word2vec (skip-gram / CBOW, negative sampling) loss plus

    λ Σ_(i,j) w_ij ‖v_i − v_j‖²

over connected pairs (Alawad et al., arXiv 2101.01337), applied *during*
training: the corpus is cut into ``steps_per_epoch`` slices; gensim's optimized
routine trains on a slice (learning rate decaying linearly over the whole run,
as in one gensim call), then a sparse graph-Laplacian step moves the connected
words' input vectors:

    V_S ← V_S − γ_t D⁻¹ L V_S = (1 − γ_t) V_S + γ_t D⁻¹ W V_S,    γ_t = min(1, λ α_t)

a gradient step on the regularizer with word2vec's own learning rate α_t,
preconditioned by each word's weighted degree D so that one step size suits
hubs and leaves. Because word2vec updates a word at every occurrence and the
regularizer once per slice, λ is larger than the λ of the summed objective:
with the defaults (α_0 = 0.025, 10 steps an epoch) λ = 2 pulls connected words
together while keeping them distinct. Words without
pairs are never touched by it. With λ = 0 this is word2vec.

gensim reads each slice lazily in its producer thread, so the overhead over a
single gensim call is one Laplacian product (pairs × dimensions) and one thread
start per slice: bench/embeddings_speed.py measures the ratio.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp
from gensim.models import KeyedVectors, Word2Vec
from tqdm.auto import tqdm

from kinpath.embeddings.config import JointConfig, Word2VecConfig
from kinpath.embeddings.corpus import Corpus
from kinpath.embeddings.retrofit import pair_matrix
from kinpath.embeddings.word2vec import new_model

log = logging.getLogger(__name__)


class LaplacianStep:
    """The regularizer's update on the rows of the words that have pairs."""

    def __init__(self, pairs: pd.DataFrame, key_to_index: dict[str, int]):
        full = pair_matrix(pairs, key_to_index, {})
        self.rows = np.flatnonzero(np.asarray(full.getnnz(axis=1)) > 0)
        sub = full[self.rows][:, self.rows]
        deg = np.asarray(sub.sum(axis=1)).ravel()
        self.walk = (sp.diags(1.0 / deg) @ sub).astype(np.float32).tocsr()  # D⁻¹W

    def __call__(self, vectors: np.ndarray, gamma: float) -> None:
        """In place: connected rows move a fraction ``gamma`` toward their neighbours' mean."""
        if gamma <= 0 or not len(self.rows):
            return
        v = vectors[self.rows]
        vectors[self.rows] = (1 - gamma) * v + gamma * (self.walk @ v)


def train_kg_joint(
    corpus: Corpus,
    pairs: pd.DataFrame,
    w2v: Word2VecConfig,
    joint: JointConfig,
    seed: int,
) -> tuple[KeyedVectors, Word2Vec]:
    model = new_model(w2v, seed)
    model.build_vocab(corpus_iterable=corpus)
    step = LaplacianStep(pairs, model.wv.key_to_index)
    log.info("kg-joint: %d of %d words have graph pairs", len(step.rows), len(model.wv))
    slices = corpus.slices(joint.steps_per_epoch)
    total = w2v.epochs * corpus.tokens
    done = 0
    bar = tqdm(total=total, desc="kg-joint", unit=" words", unit_scale=True, disable=None)
    for _ in range(w2v.epochs):
        for part in slices:
            a0 = w2v.alpha - (w2v.alpha - w2v.min_alpha) * done / total
            done += part.words
            a1 = w2v.alpha - (w2v.alpha - w2v.min_alpha) * done / total
            model.train(
                corpus_iterable=part,
                total_examples=part.sentences,
                epochs=1,
                start_alpha=a0,
                end_alpha=a1,
            )
            step(model.wv.vectors, min(1.0, joint.lam * a0))
            bar.update(part.words)
    bar.close()
    model.wv.fill_norms(force=True)
    return model.wv, model
