"""Embedding trainers by name: ``word2vec``, ``retrofit``, ``kg-joint``.

Every trainer takes the same :class:`TrainInputs` and returns gensim
``KeyedVectors``, so a config names a method and nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd
from gensim.models import KeyedVectors

from kinpath.embeddings.corpus import Corpus
from kinpath.embeddings.joint import JointConfig, train_kg_joint
from kinpath.embeddings.retrofit import RetrofitConfig, retrofit
from kinpath.embeddings.word2vec import Word2VecConfig, train_word2vec


@dataclass(frozen=True)
class TrainInputs:
    corpus: Corpus
    pairs: pd.DataFrame  # kg.pairs.PAIR_COLUMNS: the pairs the trainer may use
    seed: int
    word2vec: Word2VecConfig = field(default_factory=Word2VecConfig)
    retrofit: RetrofitConfig = field(default_factory=RetrofitConfig)
    joint: JointConfig = field(default_factory=JointConfig)
    base: KeyedVectors | None = None  # word2vec vectors already trained on this corpus


def _word2vec(x: TrainInputs) -> KeyedVectors:
    return train_word2vec(x.corpus, x.word2vec, x.seed)[0]


def _retrofit(x: TrainInputs) -> KeyedVectors:
    base = x.base if x.base is not None else _word2vec(x)
    return retrofit(base, x.pairs, x.retrofit)


def _kg_joint(x: TrainInputs) -> KeyedVectors:
    return train_kg_joint(x.corpus, x.pairs, x.word2vec, x.joint, x.seed)[0]


Method = Literal["word2vec", "retrofit", "kg-joint"]

TRAINERS: dict[str, Callable[[TrainInputs], KeyedVectors]] = {
    "word2vec": _word2vec,
    "retrofit": _retrofit,
    "kg-joint": _kg_joint,
}


def trainer(name: str) -> Callable[[TrainInputs], KeyedVectors]:
    try:
        return TRAINERS[name]
    except KeyError:
        raise ValueError(
            f"unknown embedding method {name!r}; known: {', '.join(TRAINERS)}"
        ) from None
