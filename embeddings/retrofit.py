"""Retrofitting word vectors to a knowledge graph (Faruqui et al., NAACL 2015).

Given vectors q̂ and weighted pairs of connected words, retrofitting finds q
minimizing

    Σ_i α ‖q_i − q̂_i‖² + Σ_(i,j) β_ij ‖q_i − q_j‖²

by the Jacobi update ``q_i ← (α q̂_i + Σ_j β_ij q_j) / (α + Σ_j β_ij)``,
iterated; here with one sparse matrix product per iteration (no Python loop
over words). ``β_ij = β · w_ij · r(rel) / deg_i``: the pair's weight from the
graph, a per-relation-type factor, and Faruqui's degree normalization. Words
without pairs keep their vectors; with β = 0 (or all relation factors 0) the
result is exactly the input.

``add_missing`` gives a vector to pair words that have none (knowledge-graph
terms rare or absent in the corpus): they start at zero with α = 0, so they
become the weighted mean of their neighbours.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
from gensim.models import KeyedVectors

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrofitConfig:
    alpha: float = 1.0
    beta: float = 1.0
    iterations: int = 10
    relation_weights: Mapping[str, float] = field(default_factory=dict)  # REL → factor, default 1
    add_missing: bool = False


def pair_matrix(
    pairs: pd.DataFrame, index: Mapping[str, int], relation_weights: Mapping[str, float]
) -> sp.csr_matrix:
    """Symmetric sparse matrix of pair weights over the words in ``index``."""
    keep = pairs["a"].isin(index) & pairs["b"].isin(index)
    p = pairs[keep]
    factor = p["rel"].map(lambda r: relation_weights.get(r, 1.0)).to_numpy(float)
    w = p["weight"].to_numpy(float) * factor
    i = p["a"].map(index).to_numpy(int)
    j = p["b"].map(index).to_numpy(int)
    n = len(index)
    m = sp.coo_matrix((np.r_[w, w], (np.r_[i, j], np.r_[j, i])), shape=(n, n)).tocsr()
    m.sum_duplicates()
    return m


def retrofit(
    vectors: KeyedVectors, pairs: pd.DataFrame, config: RetrofitConfig | None = None
) -> KeyedVectors:
    """New vectors pulled toward their graph neighbours; the input is not changed."""
    cfg = config or RetrofitConfig()
    words = list(vectors.index_to_key)
    base = vectors.vectors.astype(np.float32)
    alpha = np.full(len(words), cfg.alpha, dtype=np.float32)
    if cfg.add_missing:
        missing = sorted((set(pairs["a"]) | set(pairs["b"])) - set(vectors.key_to_index))
        if missing:
            words += missing
            base = np.vstack([base, np.zeros((len(missing), base.shape[1]), np.float32)])
            alpha = np.r_[alpha, np.zeros(len(missing), np.float32)]
            log.info("retrofit: %d graph terms without a corpus vector get one", len(missing))
    index = {w: i for i, w in enumerate(words)}
    adj = pair_matrix(pairs, index, cfg.relation_weights)
    deg = np.asarray((adj > 0).sum(axis=1)).ravel()
    scale = np.divide(cfg.beta, deg, out=np.zeros(len(words)), where=deg > 0)
    beta = sp.diags(scale) @ adj  # β_ij = β w_ij / deg_i (row-normalized, not symmetric)
    beta_sum = np.asarray(beta.sum(axis=1)).ravel().astype(np.float32)
    denom = alpha + beta_sum
    active = denom > 0  # words with neither a vector nor a neighbour stay zero
    q = base.copy()
    ab = alpha[:, None] * base
    for _ in range(cfg.iterations):
        new = ab + beta @ q
        q[active] = new[active] / denom[active, None]
    out = KeyedVectors(vector_size=base.shape[1], dtype=np.float32)
    out.add_vectors(words, q)
    return out
