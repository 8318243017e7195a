"""Per-task classification metrics, shared by the CNN and the baseline.

Micro-F1 equals accuracy for single-label classification; it is reported
under its own name because registries quote it. Macro-F1 averages over the
classes present in the truth or the predictions, so a rare histology the
model never predicts counts as an F1 of 0.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    return {
        "accuracy": float((y_true == y_pred).mean()),
        "micro_f1": float(f1_score(y_true, y_pred, average="micro")),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }
