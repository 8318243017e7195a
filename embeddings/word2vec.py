"""The word2vec baseline (gensim), and the settings every trainer shares.

Defaults, and why:

* ``vector_size=300``: the width the published MT-CNN reads, and the paper's;
* ``sg=1`` (skip-gram): on small clinical corpora it learns rare terms better
  than CBOW, and rare terms are most of a registry's vocabulary;
* ``window=5``: report sentences are short and list-like; a wider window mixes
  unrelated findings;
* ``negative=10``: more negatives help small corpora (Mikolov et al. suggest
  5–20 for small data);
* ``sample=1e-4``: down-samples the boilerplate ("the", "of", "specimen");
* ``min_count=3``: keeps clinical terms that occur in only a few reports, which
  is where the knowledge graph helps most, while dropping one-off OCR noise;
* ``epochs=10``: a corpus of some hundred thousand tokens needs more passes than
  gensim's default 5 to settle.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from gensim.models import KeyedVectors, Word2Vec
from gensim.models.callbacks import CallbackAny2Vec
from tqdm.auto import tqdm

from kinpath.embeddings.config import Word2VecConfig

log = logging.getLogger(__name__)


def new_model(config: Word2VecConfig, seed: int) -> Word2Vec:
    """An untrained gensim model with these settings."""
    return Word2Vec(
        vector_size=config.vector_size,
        sg=config.sg,
        window=config.window,
        negative=config.negative,
        sample=config.sample,
        min_count=config.min_count,
        epochs=config.epochs,
        alpha=config.alpha,
        min_alpha=config.min_alpha,
        workers=config.workers,
        seed=seed,
    )


def train_word2vec(
    sentences: Iterable[list[str]], config: Word2VecConfig, seed: int
) -> tuple[KeyedVectors, Word2Vec]:
    """Plain gensim word2vec over a re-iterable corpus."""
    model = new_model(config, seed)
    model.build_vocab(corpus_iterable=sentences)
    model.train(
        corpus_iterable=sentences,
        total_examples=model.corpus_count,
        epochs=config.epochs,
        callbacks=[_Progress(config.epochs)],
    )
    return model.wv, model


class _Progress(CallbackAny2Vec):
    """A tqdm bar over epochs (gensim calls back once per epoch)."""

    def __init__(self, epochs: int):
        self._bar = tqdm(total=epochs, desc="word2vec", unit=" epoch", disable=None)

    def on_epoch_end(self, model: Word2Vec) -> None:
        self._bar.update(1)

    def on_train_end(self, model: Word2Vec) -> None:
        self._bar.close()
