"""The test figures of a set of predictions: what a fit logs, and an ensemble too.

``labels`` are the data's class ids per task (``-100`` missing, ``-1`` a code
no training report carries), ``index`` the data's row of each prediction, and
``dm`` anything with the :class:`~kinpath.phenotyping.data.ReportDataModule` members
``codes``, ``train_code_counts`` and ``source_of`` (None: no rare-code or
per-table figures).
"""

from __future__ import annotations

import numpy as np

from kinpath.phenotyping.abstain import choose_threshold
from kinpath.phenotyping.decode import Decoded, Decoder, decode, decoded_metrics, independent
from kinpath.phenotyping.metrics import classification_metrics, rare_macro_f1
from kinpath.phenotyping.tasks import MISSING


def truth_names(
    labels: np.ndarray, tasks: list[str], label_maps: dict[str, list[str]]
) -> dict[str, np.ndarray]:
    """Label names per task: ``""`` where missing, ``<unseen>`` where not a class."""
    out = {}
    for j, t in enumerate(tasks):
        names = np.array([*label_maps.get(t, []), "<unseen>"], dtype=object)
        y = labels[:, j]
        out[t] = np.where(y == MISSING, "", names[np.where(y >= 0, y, len(names) - 1)])
    return out


def split_metrics(
    prefix: str, probs: dict[str, np.ndarray], labels: np.ndarray, tasks: list[str]
) -> dict[str, float]:
    """``<prefix>/<task>/{accuracy,micro_f1,macro_f1}`` of the heads' argmax."""
    out: dict[str, float] = {}
    for j, t in enumerate(tasks):
        y = labels[:, j]
        keep = y != MISSING  # unseen (-1) stays in: the model cannot be right about it
        if not keep.any():
            continue
        for k, v in classification_metrics(y[keep], probs[t][keep].argmax(1)).items():
            out[f"{prefix}/{t}/{k}"] = v
    return out


def rare_metrics(
    dm: object,
    prefix: str,
    probs: dict[str, np.ndarray],
    index: np.ndarray,
    tasks: list[str],
    label_maps: dict[str, list[str]],
) -> dict[str, float]:
    """``<prefix>/<task>/rare_macro_f1``: macro-F1 over the codes with fewer than ten
    training reports, codes no training report carries included."""
    counts = dm.train_code_counts  # type: ignore[attr-defined]
    out = {}
    for t in tasks:
        names = np.array(label_maps.get(t, []), dtype=object)
        if not len(names):
            continue
        truth = dm.codes(t, index)  # type: ignore[attr-defined]
        f1 = rare_macro_f1(truth, names[probs[t].argmax(1)], counts[t])
        if f1 is not None:
            out[f"{prefix}/{t}/rare_macro_f1"] = f1
    return out


def before_thresholds(
    probs: dict[str, np.ndarray], labels: np.ndarray, tasks: list[str], decoder: Decoder
) -> dict[str, float]:
    """Each task alone, the lowest confidence that reached its target on these (validation)
    predictions: the baseline the decoder is measured against (``test/before/...``)."""
    out = {}
    for j, t in enumerate(tasks):
        has = labels[:, j] != MISSING
        ok = probs[t][has].argmax(1) == labels[has, j]
        target = decoder.targets.get(t, decoder.target)
        out[t] = choose_threshold(probs[t][has].max(1), ok, target, None).threshold
    return out


def test_metrics(
    probs: dict[str, np.ndarray],
    labels: np.ndarray,
    index: np.ndarray,
    sim: np.ndarray | None,
    decoder: Decoder | None,
    before: dict[str, float],
    dm: object | None,
    tasks: list[str],
    label_maps: dict[str, list[str]],
) -> tuple[dict[str, float], Decoded | None]:
    """Every ``test/...`` figure, pooled and per report table; and the pooled decoded output
    (None without a decoder)."""
    truth = truth_names(labels, tasks, label_maps)
    metrics = split_metrics("test", probs, labels, tasks)
    decoded = decode(probs, decoder, sim) if decoder is not None else None
    if decoded is not None and decoder is not None:
        metrics |= decoded_metrics(decoded, truth, decoder, "test")
        metrics |= decoded_metrics(
            independent(probs, label_maps, before), truth, decoder, "test/before"
        )
    if hasattr(dm, "codes"):
        metrics |= rare_metrics(dm, "test", probs, index, tasks, label_maps)
    source_of = getattr(dm, "source_of", None)
    if source_of is not None:
        for name in sorted(set(source_of[index])):
            rows = source_of[index] == name
            part = {t: p[rows] for t, p in probs.items()}
            metrics |= split_metrics(f"test/{name}", part, labels[rows], tasks)
            metrics |= rare_metrics(dm, f"test/{name}", part, index[rows], tasks, label_maps)
            if decoder is not None:
                d = decode(part, decoder, None if sim is None else sim[rows])
                sub = {t: v[rows] for t, v in truth.items()}
                metrics |= decoded_metrics(d, sub, decoder, f"test/{name}")
                before_d = independent(part, label_maps, before)
                metrics |= decoded_metrics(before_d, sub, decoder, f"test/{name}/before")
    return metrics, decoded


def coverage_curves(
    decoded: Decoded, labels: np.ndarray, decoder: Decoder, tasks: list[str]
) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """Per task, over the labelled reports: the decoded confidence, whether the code was right,
    and the task's threshold (:func:`kinpath.phenotyping.plots.accuracy_coverage_png`)."""
    truth = truth_names(labels, tasks, decoder.label_maps)
    curves = {}
    for t in tasks:
        has = truth[t] != ""
        ok = decoded.labels[t][has] == truth[t][has]
        curves[t] = (decoded.probs[t][has], ok, decoder.thresholds.get(t, 1.01))
    return curves
