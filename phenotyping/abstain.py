"""Abstention: per-task confidence thresholds that reach a target accuracy.

A registry accepts an automatic code only if it is right often enough (97% is
the default target). For each task, on the validation split, reports are
ranked by the model's confidence (its top probability). On new reports the
model codes those at or above the threshold and abstains on the rest, which go
to a registrar. Coverage is the share coded automatically.

The threshold must hold on new reports, not only on the few it was chosen on:
the lowest confidence whose reports reached 97% on 80 validation reports
auto-coded new ones at 96.5%. So, by default (``level=0.95``), a threshold is
accepted only if a one-sided Clopper–Pearson bound says that the accuracy of
the reports it keeps is at least the target with 95% confidence. Thresholds
are tested in a fixed sequence from the most confident down, stopping at the
first that fails (Learn-then-Test, Angelopoulos et al. 2021, which keeps the
95% for the chosen one without a multiple-testing penalty); cuts keeping fewer
reports than a perfect record needs to pass (99 at 97%), or than a quarter of
the validation reports, are not tested: the sequence starts where one early
error does not end it.
``level=None`` gives the plain empirical choice.

If no threshold qualifies, the threshold is above 1: the model abstains on
every report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

NEVER = 1.01  # a threshold no probability reaches


@dataclass(frozen=True)
class Threshold:
    threshold: float
    target: float
    accuracy: float  # on the split it was chosen on, among the reports kept
    coverage: float
    lower_bound: float = float("nan")  # the accuracy bound at the chosen level

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


def lower_bound(correct: int, n: int, level: float) -> float:
    """One-sided Clopper–Pearson lower bound on a proportion at confidence ``level``."""
    if n == 0 or correct == 0:
        return 0.0
    return float(beta.ppf(1.0 - level, correct, n - correct + 1))


def choose_threshold(
    confidence: np.ndarray, correct: np.ndarray, target: float = 0.97, level: float | None = 0.95
) -> Threshold:
    """The most covering threshold whose accuracy is at least ``target`` (bounded at ``level``)."""
    if len(confidence) == 0:
        return Threshold(NEVER, target, float("nan"), 0.0)
    cov, acc, thr = curve(confidence, correct)
    if level is None:
        ok = np.flatnonzero(acc >= target)
        if not len(ok):
            return Threshold(NEVER, target, float("nan"), 0.0)
        best = ok[-1]
        return Threshold(float(thr[best]), target, float(acc[best]), float(cov[best]))
    n = np.rint(cov * len(confidence)).astype(int)
    # the sequence starts where a test has data enough: a perfect record can pass, and a
    # quarter of the reports are kept (so that one early error does not end the search)
    smallest = max(math.ceil(math.log(1.0 - level) / math.log(target)), len(confidence) // 4)
    best, bound = -1, float("nan")
    for i in np.flatnonzero(n >= smallest):
        lb = lower_bound(round(float(acc[i]) * n[i]), int(n[i]), level)
        if lb < target:
            break
        best, bound = int(i), lb
    if best < 0:
        return Threshold(NEVER, target, float("nan"), 0.0)
    return Threshold(float(thr[best]), target, float(acc[best]), float(cov[best]), bound)


def evaluate_threshold(
    confidence: np.ndarray, correct: np.ndarray, threshold: float
) -> tuple[float, float]:
    """(accuracy among the reports kept, coverage) at a fixed threshold."""
    keep = confidence >= threshold
    cov = float(keep.mean()) if len(keep) else 0.0
    acc = float(correct[keep].mean()) if keep.any() else float("nan")
    return acc, cov
