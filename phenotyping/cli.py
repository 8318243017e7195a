"""``lightning fit -c configs/mtcnn.yaml``: the phenotyping LightningCLI.

Subcommands fit / validate / test / predict, ``--print_config``. Values the
data computes (vocabulary size, classes per task, the initial vectors, class
weights, label maps) are linked into the model when the data is instantiated,
and the one seed (``seed_everything``) is linked into the data's split and
batch order. MLflow is the default logger (a local SQLite store,
``sqlite:///mlruns.db``; set ``MLFLOW_TRACKING_URI`` or
``--trainer.logger.init_args.tracking_uri`` for a server). Each fit is one
MLflow run holding the params, the resolved config (``config.yaml``), metrics
per epoch, the label maps, data counts and the embedding/KG manifests, and,
since a fit ends by testing its best checkpoint, the test metrics, thresholds
and plots. No report text goes into any of it.

Also reachable as ``python -m kinpath.phenotyping``: a separately installed
``lightning`` package (the SDK) would shadow the ``lightning`` script.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import yaml
from jsonargparse import lazy_instance
from lightning_fabric.plugins.precision.precision import _PRECISION_INPUT
from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.cli import (
    LightningArgumentParser,
    LightningCLI,
    SaveConfigCallback,
)
from pytorch_lightning.loggers import MLFlowLogger

from kinpath.common import InputError, redact
from kinpath.phenotyping.bundle import save_bundle
from kinpath.phenotyping.callbacks import EpochLine, TestArtifacts
from kinpath.phenotyping.data import ReportDataModule
from kinpath.phenotyping.module import MTCNNModule
from kinpath.phenotyping.network import KNOWLEDGE_HEADS
from kinpath.phenotyping.precision import training_precision
from kinpath.phenotyping.store import tracking_uri

log = logging.getLogger(__name__)


class MlflowSaveConfig(SaveConfigCallback):
    """Save the resolved config, label maps and data counts into the MLflow run."""

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        logger = trainer.logger
        if not isinstance(logger, MLFlowLogger):
            return
        text = self.parser.dump(self.config, skip_none=False)
        logger.experiment.log_text(logger.run_id, text, "config.yaml")
        # config.yaml may say auto: the run says what trained
        logger.experiment.set_tag(logger.run_id, "trainer.precision", str(trainer.precision))
        dm = getattr(trainer, "datamodule", None)
        if isinstance(dm, ReportDataModule):
            with tempfile.TemporaryDirectory() as tmp:
                for f in dm.save_artifacts(Path(tmp)):
                    logger.experiment.log_artifact(logger.run_id, str(f), artifact_path="data")
            if dm.embedding_manifest is not None:
                m = dm.embedding_manifest
                logger.experiment.set_tag(logger.run_id, "embeddings.method", m.get("method"))
                logger.experiment.set_tag(
                    logger.run_id, "embeddings.corpus_checksum", m["corpus"]["checksum"]
                )
                logger.experiment.set_tag(
                    logger.run_id, "kg.checksum", str(m.get("graph_checksum"))
                )


class PhenotypingTrainer(Trainer):
    """Lightning's Trainer, whose ``precision`` also takes ``auto``: ``bf16-mixed`` where the
    hardware computes in bf16 (a CUDA GPU with bf16; a CPU with ``avx512_bf16`` or
    ``amx_bf16``), ``32-true`` elsewhere (:func:`~kinpath.phenotyping.precision.training_precision`).
    What it picked, and why, goes to the log and to the MLflow run's ``trainer.precision`` tag."""

    def __init__(
        self,
        *args: object,
        precision: Literal["auto"] | _PRECISION_INPUT | None = None,
        **kwargs: object,
    ) -> None:
        picked: object = precision
        if precision == "auto":
            picked, why = training_precision(kwargs.get("accelerator", "auto"))
            log.info("trainer.precision auto: %s (%s)", picked, why)
        super().__init__(*args, precision=picked, **kwargs)  # type: ignore[arg-type]


def _graph_codes(heads: str) -> bool:
    return heads in KNOWLEDGE_HEADS


class PhenotypingCLI(LightningCLI):
    def __init__(self, *args: object, quiet: bool = False, **kwargs: object) -> None:
        """``quiet``: no test-metrics table nor run id (kinpath run prints one table for all)."""
        self.quiet = quiet
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def before_instantiate_classes(self) -> None:
        """An MLflow run without a name is named after its config file (mtcnn-tcga)."""
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        logger = cfg.get("trainer", {}).get("logger")
        args = getattr(logger, "init_args", None)
        files = cfg.get("config") or []
        if args is not None and hasattr(args, "run_name") and not args.run_name and files:
            args.run_name = Path(str(files[-1])).stem

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for src, dst in (
            ("data.vocab_size", "model.vocab_size"),
            ("data.num_classes", "model.num_classes"),
            ("data.embedding_dim", "model.embedding_dim"),
            ("data.init_vectors", "model.init_vectors"),
            ("data.class_weights", "model.class_weights"),
            ("data.label_maps", "model.label_maps"),
            ("data.coding_rules", "model.coding_rules"),
            ("data.label_terms", "model.label_terms"),
            ("data.train_counts", "model.train_counts"),
        ):
            parser.link_arguments(src, dst, apply_on="instantiate")
        # a label-knowledge head can code what training never showed: the graph's codes are classes
        parser.link_arguments("model.heads", "data.graph_codes", compute_fn=_graph_codes)
        parser.link_arguments("seed_everything", "data.seed")
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.set_defaults({"early_stopping.monitor": "val/loss", "early_stopping.patience": 5})
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {"checkpoint.monitor": "val/loss", "checkpoint.filename": "best-{epoch}"}
        )

    def before_fit(self) -> None:
        """Checkpoints go to runs/checkpoints/<MLflow run id>, not to the working directory."""
        ckpt, logger = self.trainer.checkpoint_callback, self.trainer.logger
        if (
            isinstance(ckpt, ModelCheckpoint)
            and ckpt.dirpath is None
            and isinstance(logger, MLFlowLogger)
        ):
            ckpt.dirpath = str(Path("runs") / "checkpoints" / str(logger.run_id))

    def after_fit(self) -> None:
        """Test the best checkpoint in the same run, so the run holds the test figures."""
        ckpt = self.trainer.checkpoint_callback
        if getattr(self.trainer, "fast_dev_run", False) or not isinstance(ckpt, ModelCheckpoint):
            return
        best = ckpt.best_model_path
        if not best:
            return
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best, verbose=False)
        if not self.quiet:
            print(
                pooled_test_table(
                    self.trainer.callback_metrics, list(getattr(self.model, "tasks", []))
                )
            )
        # the model now holds the best weights and their thresholds: export them for inference
        logger = self.trainer.logger
        if isinstance(logger, MLFlowLogger) and isinstance(self.datamodule, ReportDataModule):
            with tempfile.TemporaryDirectory() as tmp:
                folder = save_bundle(Path(tmp) / "bundle", self.model, self.datamodule)
                logger.experiment.log_artifacts(logger.run_id, str(folder), artifact_path="bundle")
            if not self.quiet:
                self._announce(logger)

    def _announce(self, logger: MLFlowLogger) -> None:
        """The run id that `kinpath registry register` needs, and where to see the run."""
        uri = logger._tracking_uri or tracking_uri()
        exp = logger.experiment_id
        where = (
            f"{uri.rstrip('/')}/#/experiments/{exp}/runs/{logger.run_id}"
            if uri.startswith(("http://", "https://"))
            else f"mlflow ui --backend-store-uri {uri}, then "
            f"http://127.0.0.1:5000/#/experiments/{exp}/runs/{logger.run_id}"
        )
        print(f"MLflow run {logger.run_id} ({redact(where)})\n"
              f"register it: kinpath registry register {logger.run_id} --name NAME")  # fmt: skip


def pooled_test_table(metrics: Mapping[str, object], tasks: list[str]) -> str:
    """The best checkpoint's test figures, pooled over the test splits, one row per task (the
    run holds every metric, per split too)."""
    cols = (("micro-F1", "micro_f1"), ("macro-F1", "macro_f1"), ("auto-coded", "coverage"),
            ("its accuracy", "covered_accuracy"))  # fmt: skip

    def value(key: str) -> float | None:
        v = metrics.get(key)
        return None if v is None else float(v)  # type: ignore[arg-type]  # a tensor or a float

    def cell(t: str, key: str) -> str:
        v = value(f"test/{t}/{key}")
        if v is None or (key == "covered_accuracy" and not value(f"test/{t}/coverage")):
            return "—"  # an accuracy over nothing coded is no accuracy
        return f"{v:.3f}"

    lines = [
        "| test (pooled) | " + " | ".join(c for c, _ in cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    lines += ["| " + " | ".join([t, *(cell(t, k) for _, k in cols)]) + " |" for t in tasks]
    return "\n".join(lines)


def trainer_defaults() -> dict:
    uri = tracking_uri()
    return {
        "accelerator": "auto",
        # a bar redrawn into a log file is noise beside EpochLine's one line per epoch
        "enable_progress_bar": sys.stderr.isatty(),
        "callbacks": [EpochLine(), TestArtifacts()],
        "logger": lazy_instance(
            MLFlowLogger, experiment_name="kinpath-phenotyping", tracking_uri=uri, log_model=False
        ),
    }


def cli(
    args: list[str] | dict | None = None, run: bool = True, quiet: bool = False
) -> PhenotypingCLI:
    """The LightningCLI of kinpath's MT-CNN; ``args`` as command-line strings or in
    LightningCLI's structured form (``{"fit": {"trainer": {"max_epochs": 1}}}``), where a
    ``config`` list names YAML files read under the options beside it."""
    if isinstance(args, dict):
        args = {k: with_config_files(v) if k in SUBCOMMANDS and isinstance(v, dict) else v
                for k, v in with_config_files(args).items()}  # fmt: skip
    return PhenotypingCLI(
        MTCNNModule,
        ReportDataModule,
        seed_everything_default=42,
        trainer_class=PhenotypingTrainer,
        trainer_defaults=trainer_defaults(),
        save_config_callback=MlflowSaveConfig,
        save_config_kwargs={"save_to_log_dir": False},
        args=args,
        run=run,
        quiet=quiet,
    )


SUBCOMMANDS = ("fit", "validate", "test", "predict")


def with_config_files(options: dict) -> dict:
    """``options`` over the YAML files its ``config`` list names, read in order, a later value
    over an earlier one and nested sections merged. jsonargparse reads ``--config`` on a
    command line but not in the structured form: without this, a structured fit silently ran
    with the defaults instead of its config file's values."""
    merged: dict = {}
    for f in options.get("config") or []:
        try:
            loaded = yaml.safe_load(Path(f).read_text()) or {}
        except OSError as e:
            raise InputError(f"cannot read the config file: {e.strerror}", path=Path(f)) from None
        if not isinstance(loaded, dict):
            raise InputError("a config file must hold a mapping of options", path=Path(f))
        merged = _merge(merged, loaded)
    return _merge(merged, options)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) else v
    return out


def nested(options: dict[str, object]) -> dict[str, object]:
    """``{"trainer.max_epochs": 8}`` as LightningCLI's structured form, ``{"trainer":
    {"max_epochs": 8}}``."""
    out: dict[str, object] = {}
    for key, value in options.items():
        *path, last = key.split(".")
        node = out
        for part in path:
            node = node.setdefault(part, {})  # type: ignore[assignment]
            if not isinstance(node, dict):
                raise InputError(f"{key!r} sets inside an option that has a value")
        node[last] = value
    return out


def main() -> None:
    from kinpath.common import setup

    setup()
    cli()


if __name__ == "__main__":
    main()
