"""``kinpath predict`` and ``kinpath registry ...``: the hospital-facing commands.

Thin wrappers: option parsing and printing here, the work in
:mod:`pipelines.batch` and :mod:`pipelines.registry`.
"""

from __future__ import annotations

import json
from pathlib import Path


def predict(
    model: str | None = None,
    input: Path | None = None,
    output: Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    chunk_size: int = 500,
    batch_size: int = 32,
    id_column: str = "report_id",
    text_column: str = "text",
    tracking_uri: str | None = None,
) -> None:
    """Score reports with a registered model; one output row per input record, then a JSON summary.

    Args:
        model: Model URI, e.g. models:/kinpath@champion (required).
        input: Reports: .csv, .jsonl, .parquet, or a folder of .txt files (required).
        output: .parquet or .csv to write (required).
        resume: Finish a killed job from its written chunks.
        overwrite: Replace an existing output.
        chunk_size: Records per atomically written chunk.
        batch_size: Reports per forward pass.
        id_column: The input's id column.
        text_column: The input's text column.
        tracking_uri: MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite:///mlruns.db).
    """
    from kg.errors import InputError
    from pipelines.batch import load_model
    from pipelines.batch import predict as run_batch

    if model is None or input is None or output is None:
        raise InputError("--model, --input and --output are required")
    summary = run_batch(
        load_model(model, tracking_uri), input, output, resume=resume, overwrite=overwrite,
        chunk_size=chunk_size, batch_size=batch_size, id_column=id_column, text_column=text_column,
    )  # fmt: skip
    print(json.dumps(summary, indent=2))


def register(run_id: str, name: str = "kinpath", tracking_uri: str | None = None) -> None:
    """Register a training run's model as a new version of NAME.

    Args:
        run_id: The MLflow run of a finished `lightning fit`.
        name: Registered model name.
        tracking_uri: MLflow tracking URI.
    """
    from pipelines import registry

    r = registry.register(run_id, name, tracking_uri)
    print(json.dumps(r.__dict__, indent=2))


def promote(
    name: str, version: str, alias: str = "champion", tracking_uri: str | None = None
) -> None:
    """Point an alias (champion) at a model version.

    Args:
        name: Registered model name.
        version: Version to promote.
        alias: Alias to set.
        tracking_uri: MLflow tracking URI.
    """
    from pipelines import registry

    registry.promote(name, version, alias, tracking_uri)
    print(
        json.dumps(
            {"name": name, "version": version, "alias": alias, "uri": f"models:/{name}@{alias}"}
        )
    )


def list_(tracking_uri: str | None = None) -> None:
    """List registered models, their versions, aliases and tags.

    Args:
        tracking_uri: MLflow tracking URI.
    """
    from pipelines import registry

    print(json.dumps(registry.list_models(tracking_uri), indent=2, default=str))


REGISTRY_COMMANDS = {"register": register, "promote": promote, "list": list_}
