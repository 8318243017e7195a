"""The stage cache's bookkeeping in the tracking store."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pytest
from pytorch_lightning.loggers import MLFlowLogger

from kinpath.pipelines.stages import STAGE_TAG, Stages, stage_id


class KilledError(Exception):
    """Stands for the end of a process killed mid-stage: no code of the stage runs after."""


def test_a_stage_closes_the_runs_its_killed_attempt_left_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a fit's run is made by Lightning's MLflow logger; a process killed mid-fit leaves it
    # RUNNING, and the tracking UI showed such runs as training for days
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    made: list[str] = []

    def fit(folder: Path, die: bool) -> dict:
        logger = MLFlowLogger(experiment_name="fits", tracking_uri=uri, run_name="fit")
        made.append(str(logger.run_id))
        if die:
            raise KilledError
        logger.finalize("success")
        return {"run_id": logger.run_id}

    client = mlflow.MlflowClient(uri)
    other = client.create_run(client.create_experiment("another job"))  # not the stage's
    stages = Stages(tmp_path / "work", tracking_uri=uri)
    with pytest.raises(KilledError):
        stages.run("fit-a", {"lr": 1}, [], lambda f: fit(f, die=True))
    killed = client.get_run(made[0])
    assert killed.info.status == "RUNNING"
    assert killed.data.tags[STAGE_TAG] == stage_id(tmp_path / "work/fit-a")
    assert "MLFLOW_RUN_CONTEXT" not in os.environ  # the tag is the stage's only

    # another stage's attempt leaves the first stage's runs alone
    Stages(tmp_path / "work", tracking_uri=uri).run("fit-b", {}, [], lambda f: fit(f, die=False))
    assert client.get_run(made[0]).info.status == "RUNNING"

    out = Stages(tmp_path / "work", tracking_uri=uri).run(
        "fit-a", {"lr": 1}, [], lambda f: fit(f, die=False)
    )
    assert client.get_run(made[0]).info.status == "KILLED"
    assert client.get_run(out["run_id"]).info.status == "FINISHED"
    assert client.get_run(made[1]).info.status == "FINISHED"
    assert client.get_run(other.info.run_id).info.status == "RUNNING"
    assert f"{made[0]} were left RUNNING and are now marked KILLED" in caplog.text
