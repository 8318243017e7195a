"""Abstention: per-task confidence thresholds that reach a target accuracy.

A registry accepts an automatic code only if it is right often enough (97% is
the default target). For each task, on the validation split, reports are
ranked by the model's confidence (its top probability); the threshold is the
lowest confidence at which the reports at or above it are still coded at the
target accuracy. On new reports the model codes those at or above the
threshold and abstains on the rest, which go to a registrar. Coverage is the
share coded automatically.

If no threshold reaches the target (even the most confident answers are too
often wrong), the threshold is above 1: the model abstains on every report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NEVER = 1.01  # a threshold no probability reaches


@dataclass(frozen=True)
class Threshold:
    threshold: float
    target: float
    accuracy: float  # on the split it was chosen on, among the reports kept
    coverage: float

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def curve(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Accuracy among the k most confident reports, for every k: (coverage, accuracy, threshold)."""
    order = np.argsort(-confidence, kind="stable")
    c, ok = confidence[order], correct[order].astype(float)
    k = np.arange(1, len(c) + 1)
    acc = np.cumsum(ok) / k
    # a threshold keeps every report with equal confidence: only the last of a tie is a cut
    cut = np.r_[c[1:] < c[:-1], True] if len(c) else np.array([], bool)
    return k[cut] / len(c), acc[cut], c[cut]


def choose_threshold(
    confidence: np.ndarray, correct: np.ndarray, target: float = 0.97
) -> Threshold:
    """The threshold with the highest coverage whose accuracy is at least ``target``."""
    if len(confidence) == 0:
        return Threshold(NEVER, target, float("nan"), 0.0)
    cov, acc, thr = curve(confidence, correct)
    ok = np.flatnonzero(acc >= target)
    if not len(ok):
        return Threshold(NEVER, target, float("nan"), 0.0)
    best = ok[-1]
    return Threshold(float(thr[best]), target, float(acc[best]), float(cov[best]))


def evaluate_threshold(
    confidence: np.ndarray, correct: np.ndarray, threshold: float
) -> tuple[float, float]:
    """(accuracy among the reports kept, coverage) at a fixed threshold."""
    keep = confidence >= threshold
    cov = float(keep.mean()) if len(keep) else 0.0
    acc = float(correct[keep].mean()) if keep.any() else float("nan")
    return acc, cov
