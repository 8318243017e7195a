"""Plots a reviewer looks at: confusion matrices and accuracy–coverage curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kinpath.phenotyping.abstain import curve


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix_png(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    classes: Sequence[str],
    title: str,
    path: Path,
    top: int = 25,
) -> Path:
    """Row-normalized confusion matrix of the ``top`` most frequent true classes."""
    plt = _plt()
    keep = y_true >= 0
    y_true, y_pred = y_true[keep], y_pred[keep]
    present = np.unique(y_true)
    freq = sorted(present, key=lambda c: -(y_true == c).sum())[:top]
    labels = sorted(set(freq))
    # counted here: sklearn's confusion_matrix warns on a task with one class (behavior on TCGA)
    cm = np.array([[((y_true == a) & (y_pred == b)).sum() for b in labels] for a in labels], float)
    cm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(max(4, 0.35 * n + 2), max(3.5, 0.35 * n + 1.5)))
    im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1)
    names = [classes[i] if 0 <= i < len(classes) else "?" for i in labels]
    ax.set_xticks(range(n), names, rotation=90, fontsize=7)
    ax.set_yticks(range(n), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def accuracy_coverage_png(
    tasks: Mapping[str, tuple[np.ndarray, np.ndarray, float]],
    path: Path,
    target: float,
    model: str = "",
) -> Path:
    """One accuracy–coverage curve per task; the marker is the chosen threshold."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for task, (conf, correct, thr) in tasks.items():
        cov, acc, _ = curve(conf, correct)
        (line,) = ax.plot(cov, acc, label=task, lw=1.5)
        keep = conf >= thr
        if keep.any():
            ax.plot(keep.mean(), correct[keep].mean(), "o", color=line.get_color())
    ax.axhline(target, color="grey", ls="--", lw=1, label=f"target {target:.0%}")
    ax.set_xlabel("coverage (share of reports coded automatically)")
    ax.set_ylabel("accuracy of the coded reports")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0, 1.0)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the curves
    ax.set_title(
        f"Accuracy vs coverage on the test split{': ' + model if model else ''}", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
