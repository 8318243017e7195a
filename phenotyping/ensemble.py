"""A seed ensemble: fits of one config that differ only in their seed, scored as one model.

One MT-CNN fit varies by 0.02–0.06 macro-F1 from seed to seed on the TCGA
splits; the average of three seeds' class probabilities is better than any of
them on site and histology (docs/results/tcga.md). :func:`build_ensemble`
makes that average a model a registry can deploy:

1. the members' bundles become one (:func:`kinpath.phenotyping.bundle.save_ensemble`:
   they must read reports alike — one vocabulary, tokenizer and label maps);
2. the ensemble scores the validation split through the inference path
   (:func:`kinpath.phenotyping.bundle.score_ids`), and its decoder — temperatures,
   abstention and back-off thresholds, the out-of-scope threshold — is fitted on
   those averaged probabilities with the members' coding rules and targets, so
   its auto-coding promise holds for what it emits, not for what a member would;
3. it scores the test split and reports the same ``test/...`` figures a fit
   logs (:mod:`kinpath.phenotyping.evaluate`), plus its validation and test loss (the
   sum over tasks of the mean cross-entropy of the labelled reports; over the
   whole split, where a fit's ``val/loss`` is a mean over batches), the
   members' mean validation loss by the same measure, and its validation
   macro-F1.

Nothing here knows about MLflow: :mod:`kinpath.pipelines.ensemble` fetches the members
and logs the result.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kinpath.common import InputError
from kinpath.phenotyping.bundle import (
    Bundle,
    check_reads_like,
    load_bundle,
    save_ensemble,
    score,
    score_ids,
)
from kinpath.phenotyping.decode import EPS, Decoder, decode, fit_decoder
from kinpath.phenotyping.drift import Scored, fit_reference
from kinpath.phenotyping.evaluate import (
    before_thresholds,
    coverage_curves,
    split_metrics,
    test_metrics,
    truth_names,
)
from kinpath.phenotyping.plots import accuracy_coverage_png, confusion_matrix_png

if TYPE_CHECKING:
    from kinpath.phenotyping.data import ReportDataModule

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnsembleResult:
    folder: Path  # the ensemble's bundle
    val_loss: float
    metrics: dict[str, float]  # val/<task>/macro_f1 ... and every test/... figure
    decoder: Decoder
    plots: list[Path]


def build_ensemble(
    members: Sequence[Path],
    folder: Path,
    dm: ReportDataModule,
    provenance: list[dict],
    plots: Path | None = None,
    batch_size: int = 32,
) -> EnsembleResult:
    """The members' bundles as one ensemble bundle in ``folder``, its decoder fitted on the
    data's validation split, its figures on the test split; ``plots``: where to draw the
    accuracy–coverage curves and the confusion matrices (none when None)."""
    save_ensemble(folder, members, provenance)
    bundle = load_bundle(folder, precision="fp32")  # the figures of the model as trained
    check_reads_like(bundle, dm.vocab.itos, dm.label_maps)
    tasks, maps = bundle.tasks, bundle.label_maps

    val_rows = dm.splits["val"]
    if not len(val_rows):
        raise InputError("the data has no validation reports to fit the ensemble's decoder on")
    # each member once: its own loss (what averaging gained, by the same measure) and, averaged,
    # the ensemble's probabilities and similarity, as score_ids computes them for the ensemble
    parts = [_score(load_bundle(m, precision="fp32"), dm, val_rows, batch_size) for m in members]
    val_probs = {t: np.mean([p[t] for p, _ in parts], axis=0) for t in tasks}
    sims = [s for _, s in parts if s is not None]
    val_sim = np.mean(sims, axis=0) if len(sims) == len(parts) else None
    val_y = dm.labels[val_rows]
    old = bundle.decoder
    decoder = fit_decoder(
        val_probs, truth_names(val_y, tasks, maps), maps, old.hierarchy, old.valid,
        targets=old.targets, target=old.target, confidence=old.confidence, similarity=val_sim,
    )  # fmt: skip
    (folder / "decoder.json").write_text(json.dumps(decoder.as_dict(), indent=1) + "\n")
    # the drift reference of what the ensemble reads: its members' mean document vectors
    val_ids = [dm.ids[i] for i in val_rows]
    ens = score(bundle, val_ids, batch_size, vectors=True)
    assert ens.vectors is not None
    d = decode(ens.probs, decoder, ens.similarity)
    seen = Scored(ens.vectors, val_ids, d.out_of_scope, d.probs, d.labels, decoder.thresholds)
    fit_reference(seen).save(folder / "drift.json")
    metrics = split_metrics("val", val_probs, val_y, tasks)
    loss = validation_loss(val_probs, val_y, tasks)
    member_losses = [validation_loss(p, val_y, tasks) for p, _ in parts]
    metrics["val/loss"] = loss
    metrics["val/member_loss_mean"] = float(np.mean(member_losses))
    before = before_thresholds(val_probs, val_y, tasks, decoder)

    test_rows = dm.splits["test"]
    drawn: list[Path] = []
    if len(test_rows):
        probs, sim = _score(bundle, dm, test_rows, batch_size)
        y = dm.labels[test_rows]
        test, decoded = test_metrics(probs, y, test_rows, sim, decoder, before, dm, tasks, maps)
        metrics |= test
        metrics["test/loss"] = validation_loss(probs, y, tasks)
        if plots is not None and decoded is not None:
            plots.mkdir(parents=True, exist_ok=True)
            name = f"MT-CNN ensemble of {len(bundle.nets)}"
            drawn.append(accuracy_coverage_png(
                coverage_curves(decoded, y, decoder, tasks), plots / "accuracy_coverage.png",
                decoder.target, name,
            ))  # fmt: skip
            for j, t in enumerate(tasks):
                if (y[:, j] >= 0).any():
                    drawn.append(confusion_matrix_png(
                        y[:, j], probs[t].argmax(1), maps[t],
                        f"{t}: confusion (test, row-normalized), {name}", plots / f"confusion_{t}.png",
                    ))  # fmt: skip
    log.info("ensemble of %d members: validation loss %.3f (the members alone: %s)",
             len(bundle.nets), loss, ", ".join(f"{x:.3f}" for x in member_losses))  # fmt: skip
    return EnsembleResult(folder, loss, metrics, decoder, drawn)


def validation_loss(probs: dict[str, np.ndarray], labels: np.ndarray, tasks: list[str]) -> float:
    """The sum over tasks of the mean cross-entropy of the reports with a label of the
    model's classes: the fits' ``val/loss``, over the whole split at once."""
    total = 0.0
    for j, t in enumerate(tasks):
        y = labels[:, j]
        keep = y >= 0
        if keep.any():
            total += float(-np.log(np.clip(probs[t][keep, y[keep]], EPS, 1.0)).mean())
    return total


def _score(
    bundle: Bundle, dm: ReportDataModule, rows: np.ndarray, batch_size: int
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    return score_ids(bundle, [dm.ids[i] for i in rows], batch_size)
