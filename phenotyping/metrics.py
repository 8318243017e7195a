"""Per-task classification metrics, shared by the CNN and the baseline.

Micro-F1 equals accuracy for single-label classification; it is reported
under its own name because registries quote it. Macro-F1 averages over the
classes present in the truth or the predictions, so a rare histology the
model never predicts counts as an F1 of 0. :func:`rare_macro_f1` is the same over
the codes with fewer than ten training reports: the long tail a registry cares about.
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


RARE_BELOW = 10  # a code with fewer training reports than this is rare


def rare_macro_f1(
    truth: np.ndarray, pred: np.ndarray, train_counts: dict[str, int], below: int = RARE_BELOW
) -> float | None:
    """Macro-F1 over the true codes with fewer than ``below`` training reports (none included).

    ``truth`` and ``pred`` are code strings ("" = no label, left out), so a code that no
    training report carries counts too: a model without a class for it scores 0 there,
    whatever its heads are. None when the truth holds no rare code.
    """
    has = truth != ""
    truth, pred = truth[has], pred[has]
    rare = sorted({c for c in truth if train_counts.get(c, 0) < below})
    if not rare:
        return None
    f1 = []
    for c in rare:
        tp = int(((pred == c) & (truth == c)).sum())
        wrong = int(((pred == c) != (truth == c)).sum())  # false positives + false negatives
        f1.append(2 * tp / (2 * tp + wrong))
    return float(np.mean(f1))
