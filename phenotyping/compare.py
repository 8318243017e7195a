"""One table: the MT-CNN initialized three ways against the TF-IDF baseline.

For each initialization (``random``: the kg-joint vocabulary with random
vectors on the same scale; ``word2vec``; ``kg-joint``) the phenotyping
LightningCLI fits the config's model, which ends by testing its best
checkpoint; each fit is its own MLflow run (run name ``mtcnn-<init>``). The
TF-IDF + logistic regression baseline runs on the same split and is logged as
an MLflow run too (``tfidf-logreg``). The table (a row per method: micro- and
macro-F1 and coverage at the target accuracy per task, and macro-F1 over the
rare codes) is printed and written as Markdown and JSON. ``kinpath run`` makes
the same table for initializations × heads × seeds.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kinpath.common import InputError
from kinpath.phenotyping.baseline import tfidf_baseline
from kinpath.phenotyping.cli import cli, nested
from kinpath.phenotyping.config import TfidfConfig
from kinpath.phenotyping.store import tracking_uri
from kinpath.phenotyping.table import method_table

log = logging.getLogger(__name__)


def compare(
    fit_config: Path | None = None,
    embeddings: dict[str, str] | None = None,
    out: Path = Path("runs/phenotyping-compare"),
    random_vocabulary: str = "kg-joint",
    baseline: bool = True,
    tfidf: TfidfConfig = TfidfConfig(),
    overrides: dict[str, Any] | None = None,
) -> None:
    """Fit and test the MT-CNN per initialization, run the baseline, print one table.

    Args:
        fit_config: A phenotyping config (configs/tcga.yaml); required.
        embeddings: Embeddings folder per initialization, e.g. {word2vec: runs/emb/word2vec,
            kg-joint: runs/emb/kg-joint}; "random" is added, using random_vocabulary's folder;
            required.
        out: Where results.md and results.json go.
        random_vocabulary: Which folder's tokenizer and vocabulary the random initialization uses.
        baseline: Also run TF-IDF + logistic regression.
        tfidf: Baseline settings.
        overrides: Config keys set for every fit, dotted as in the config (e.g.
            {trainer.max_epochs: 5}).
    """
    if fit_config is None or not embeddings:
        raise InputError("--fit_config and --embeddings are required")
    if random_vocabulary not in embeddings:
        raise InputError(f"random_vocabulary {random_vocabulary!r} is not one of the embeddings")
    inits = {"random": embeddings[random_vocabulary], **embeddings}
    results: dict[str, dict[str, float]] = {}
    dm = None
    for name, folder in inits.items():
        options = {
            "data.embeddings": folder, "model.init": "random" if name == "random" else "pretrained",
            "trainer.logger.init_args.run_name": f"mtcnn-{name}",
        } | (overrides or {})  # fmt: skip
        log.info("fitting mtcnn-%s", name)
        c = cli({"fit": nested(options) | {"config": [str(fit_config)]}})
        results[f"mtcnn-{name}"] = {
            k: float(v) for k, v in c.trainer.callback_metrics.items() if k.startswith("test/")
        }
        dm = c.datamodule
    if baseline and dm is not None:
        metrics = tfidf_baseline(dm, tfidf)
        results["tfidf-logreg"] = metrics
        _log_baseline(metrics, tfidf, dm.summary())
    tasks = list(dm.tasks) if dm is not None else []
    table = method_table(results, tasks)
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(table)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")


def _log_baseline(metrics: dict[str, float], cfg: TfidfConfig, data: dict) -> None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri())
    exp = client.get_experiment_by_name("kinpath-phenotyping")
    exp_id = exp.experiment_id if exp else client.create_experiment("kinpath-phenotyping")
    run = client.create_run(exp_id, run_name="tfidf-logreg")
    for k, v in asdict(cfg).items():
        client.log_param(run.info.run_id, k, v)
    for k, v in metrics.items():
        client.log_metric(run.info.run_id, k, v)
    client.log_text(run.info.run_id, json.dumps(data, indent=2), "data/data_summary.json")
    client.set_terminated(run.info.run_id)


COMMANDS = {"compare": compare}
