"""The word2vec and kg-joint settings, apart from their trainers so that a config can be read
(``kinpath run --help``, a YAML file) without importing gensim."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Word2VecConfig:
    vector_size: int = 300
    sg: int = 1
    window: int = 5
    negative: int = 10
    sample: float = 1e-4
    min_count: int = 3
    epochs: int = 10
    alpha: float = 0.025
    min_alpha: float = 0.0001
    workers: int = 2


@dataclass(frozen=True)
class JointConfig:
    lam: float = 2.0
    steps_per_epoch: int = 10
