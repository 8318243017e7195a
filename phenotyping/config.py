"""The TF-IDF baseline's settings, apart from its code so that a pipeline config can be read
(``kinpath run --help``, a YAML file) without importing scikit-learn."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TfidfConfig:
    """TF-IDF + logistic regression, one regression a task.

    Args:
        ngram_max: Word n-grams from 1 to this.
        min_df: Terms in at least this many training reports.
        max_features: The most frequent terms kept.
        C: Inverse L2 regularization strength (scikit-learn's name).
        max_iter: L-BFGS iterations at most.
        n_jobs: The tasks' regressions fitted in this many worker processes at once (the
            same figures); None: one a core from 1,000 training reports on, one process
            below that (starting the workers takes longer than such fits). Each holds its
            own regression, so memory grows with it.
    """

    ngram_max: int = 2
    min_df: int = 2
    max_features: int = 200_000
    C: float = 10.0
    max_iter: int = 2000
    n_jobs: int | None = None
