"""The callbacks of a ``lightning fit``: one log line per epoch, and the test's plots and
files uploaded to the run.

:class:`EpochLine` logs validation loss and macro-F1 per task after each epoch where no
progress bar is drawn (output to a file). :class:`TestArtifacts` draws, after a test, a
confusion matrix per task and the accuracy–coverage curves, writes the decoder as JSON, and
uploads them to the MLflow run (or the trainer's log folder with another logger): the
module itself keeps only the model, the loss and the figures (``test_outputs``).
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from pathlib import Path

from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.loggers import MLFlowLogger

from kinpath.phenotyping.plots import accuracy_coverage_png, confusion_matrix_png

log = logging.getLogger(__name__)


class EpochLine(Callback):
    """One log line per epoch (validation loss, macro-F1 per task) where there is no bar."""

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # after the epoch's validation (callbacks' validation hooks run before the module's,
        # so there the metrics would still be the previous epoch's)
        if trainer.progress_bar_callback and sys.stderr.isatty():
            return
        m = trainer.callback_metrics
        f1 = ", ".join(
            f"{t} {float(m[f'val/{t}/macro_f1']):.3f}"
            for t in getattr(pl_module, "tasks", [])
            if f"val/{t}/macro_f1" in m
        )
        loss = float(m["val/loss"]) if "val/loss" in m else float("nan")
        log.info("epoch %d/%d: val loss %.3f; macro-F1 %s (%.0f s)", trainer.current_epoch + 1,
                 trainer.max_epochs or 0, loss, f1, time.perf_counter() - getattr(self, "_t0", 0.0))  # fmt: skip


class TestArtifacts(Callback):
    """After a test: ``decoder.json``, ``confusion_<task>.png`` and ``accuracy_coverage.png``
    under ``test/`` in the run (on ``on_test_end``, which follows the module's
    ``on_test_epoch_end`` where the figures are made)."""

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        out = getattr(pl_module, "test_outputs", None)
        if out is None:
            return
        hp = pl_module.hparams
        maps = hp.get("label_maps") or {}
        decoder = getattr(pl_module, "decoder", None)
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            files = [d / "decoder.json"]
            files[0].write_text(json.dumps(decoder.as_dict() if decoder else {}, indent=2))
            for j, t in enumerate(getattr(pl_module, "tasks", [])):
                y = out.labels[:, j]
                if (y >= 0).any():
                    files.append(confusion_matrix_png(
                        y, out.probs[t].argmax(1), maps.get(t, []),
                        f"{t}: confusion (test, row-normalized)", d / f"confusion_{t}.png",
                    ))  # fmt: skip
            if out.curves:
                files.append(accuracy_coverage_png(
                    out.curves, d / "accuracy_coverage.png", hp["target_accuracy"],
                    _model_name(trainer, pl_module),
                ))  # fmt: skip
            _upload(trainer, files)


def _model_name(trainer: Trainer, pl_module: LightningModule) -> str:
    """What a plot's title names: the MT-CNN, its initialization and the run."""
    dm = getattr(trainer, "datamodule", None)
    method = ((getattr(dm, "embedding_manifest", None) or {}).get("method")) or "no"
    init = "random vectors" if pl_module.hparams["init"] == "random" else f"{method} vectors"
    run = getattr(trainer.logger, "run_id", None)
    return f"MT-CNN, {init}" + (f" (run {str(run)[:8]})" if run else "")


def _upload(trainer: Trainer, files: list[Path]) -> None:
    """Upload files to the run when the logger is MLflow; otherwise keep them in the log dir."""
    logger = trainer.logger
    if isinstance(logger, MLFlowLogger):
        for f in files:
            logger.experiment.log_artifact(logger.run_id, str(f), artifact_path="test")
    elif trainer.log_dir:
        out = Path(trainer.log_dir) / "test"
        out.mkdir(parents=True, exist_ok=True)
        for f in files:
            (out / f.name).write_bytes(f.read_bytes())
