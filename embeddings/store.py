"""The embeddings folder that the CNN and the batch jobs read.

::

    manifest.json     method, settings, seed, corpus checksum and counts, the graph's
                      manifest checksum, vocabulary size, pair counts
    vectors.kv        gensim KeyedVectors (``KeyedVectors.load``)
    vectors.txt       the same in word2vec text format (``load_word2vec_format``)
    tokenizer/        the report tokenizer (:mod:`kinpath.embeddings.tokenize`)
    pairs.parquet     the graph pairs the trainer was given
    heldout_pairs.parquet  pairs withheld from it, for evaluation

No report text is stored here: vectors, vocabulary and counts only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from gensim.models import KeyedVectors

from kinpath.common import InputError
from kinpath.embeddings.tokenize import ReportTokenizer


@dataclass(frozen=True)
class EmbeddingsFolder:
    path: Path
    vectors: KeyedVectors
    tokenizer: ReportTokenizer
    manifest: dict

    def pairs(self, held_out: bool = False) -> pd.DataFrame:
        return pd.read_parquet(
            self.path / ("heldout_pairs.parquet" if held_out else "pairs.parquet")
        )


def save_embeddings(
    out: Path,
    vectors: KeyedVectors,
    tokenizer: ReportTokenizer,
    manifest: dict,
    pairs: pd.DataFrame,
    heldout: pd.DataFrame,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    # gensim's own event log stamps the clock and the platform into vectors.kv; manifest.json
    # says what made the vectors, so the same inputs give the same bytes
    vectors.lifecycle_events = None
    vectors.save(str(out / "vectors.kv"))
    vectors.save_word2vec_format(str(out / "vectors.txt"), binary=False)
    tokenizer.save(out / "tokenizer")
    pairs.to_parquet(out / "pairs.parquet", index=False)
    heldout.to_parquet(out / "heldout_pairs.parquet", index=False)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")


def load_embeddings(path: Path) -> EmbeddingsFolder:
    path = Path(path)
    if not (path / "manifest.json").exists():
        raise InputError(
            "not an embeddings folder (no manifest.json); train one with `kinpath embed train`",
            path=path,
        )
    return EmbeddingsFolder(
        path=path,
        vectors=KeyedVectors.load(str(path / "vectors.kv")),
        tokenizer=ReportTokenizer.load(path / "tokenizer"),
        manifest=json.loads((path / "manifest.json").read_text()),
    )
