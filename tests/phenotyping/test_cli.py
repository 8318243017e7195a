"""The LightningCLI end to end on the fixture reports, and the no-report-text guarantee."""

import logging
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from kinpath.phenotyping.cli import cli

ROOT = Path(__file__).resolve().parents[2]
SECRET = "Zebulon Quixotic-Marchbanks"  # a made-up patient name planted in a report


@pytest.mark.parametrize("config", [[], ["-c", "configs/mtcnn.yaml"]])
def test_print_config_shows_the_full_config(config: list[str]) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "kinpath.phenotyping", "fit", *config, "--print_config"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    for key in ("seed_everything: 42", "data:", "kernel_sizes:", "early_stopping:", "MLFlowLogger"):
        assert key in r.stdout, key


def test_fast_dev_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    c = cli(["fit", "-c", str(ROOT / "configs/mtcnn.yaml"), "--data.data",
             str(ROOT / "tests/fixtures/reports.csv"), "--trainer.fast_dev_run=true"])  # fmt: skip
    # one training batch and one validation batch, then stop: no checkpoint is written
    assert c.trainer.global_step == 1 and "val/loss" in c.trainer.callback_metrics
    assert not (tmp_path / "runs").exists()


def test_a_structured_fit_reads_its_config_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # kinpath run, compare and evaluate start fits this way; jsonargparse reads no config file
    # in the structured form, and their fits ran with the defaults instead of the config's
    from kinpath.common import InputError
    from kinpath.phenotyping.cli import nested

    monkeypatch.chdir(tmp_path)
    (tmp_path / "fit.yaml").write_text(
        "model: {filters: 7, dropout: 0.3}\nearly_stopping: {patience: 1}\ntrainer: {log_every_n_steps: 3}\n"
    )
    options = {"data.data": str(ROOT / "tests/fixtures/reports.csv"), "model.dropout": 0.2,
               "trainer.fast_dev_run": True, "trainer.logger": False}  # fmt: skip
    c = cli({"fit": nested(options) | {"config": [str(ROOT / "configs/mtcnn.yaml"), "fit.yaml"]}})
    stop = next(cb for cb in c.trainer.callbacks if type(cb).__name__ == "EarlyStopping")
    assert (c.model.hparams["filters"], stop.patience, c.trainer.log_every_n_steps) == (7, 1, 3)
    assert c.model.hparams["dropout"] == 0.2  # an option beside the files wins over them
    with pytest.raises(InputError, match=r"missing\.yaml: cannot read the config file"):
        cli({"fit": {"config": ["missing.yaml"]}})


def _all_text(db: Path, artifacts: Path) -> str:
    con = sqlite3.connect(db)
    parts = []
    for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'"):
        for row in con.execute(f"SELECT * FROM {table}"):
            parts += [str(v) for v in row]
    for f in artifacts.rglob("*"):
        if f.is_file():
            parts.append(f.read_bytes().decode("utf-8", "replace"))
    return "\n".join(parts)


def test_fit_tracks_in_mlflow_without_report_text(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    df = pd.read_csv(ROOT / "tests/fixtures/reports.csv", dtype=str, keep_default_na=False)
    df.loc[0, "text"] = f"Patient {SECRET} seen today. " + df.loc[0, "text"]
    data = tmp_path / "reports.csv"
    df.to_csv(data, index=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns.db'}")
    caplog.set_level(logging.DEBUG)
    cli(["fit", "-c", str(ROOT / "configs/mtcnn.yaml"), "--data.data", str(data),
         "--trainer.max_epochs=2", "--model.filters=16", "--data.max_length=200"])  # fmt: skip
    out, err = capfd.readouterr()

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")
    (run,) = client.search_runs(
        [client.get_experiment_by_name("kinpath-phenotyping").experiment_id]
    )
    arts = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "data", "test"} <= arts
    assert "val/site/macro_f1" in run.data.metrics and "test/site/coverage" in run.data.metrics
    assert len(client.get_metric_history(run.info.run_id, "val/loss")) == 2  # one per epoch
    assert run.info.run_name == "mtcnn"  # named after its config file
    assert run.data.tags["trainer.precision"] == "32-true"  # what trained, whatever the config said
    # off a terminal, one line per epoch with its own validation figures
    assert "epoch 1/2: val loss" in caplog.text and "epoch 2/2: val loss" in caplog.text
    first = client.get_metric_history(run.info.run_id, "val/site/macro_f1")[0].value
    assert f"macro-F1 site {first:.3f}" in caplog.text.split("epoch 2/2")[0]
    assert f"MLflow run {run.info.run_id}" in out  # the id `kinpath registry register` needs
    # redirected output: no progress bar redrawn into it, a FLOP count that is one, and the
    # test figures as a table of rounded numbers rather than 56 rows of raw floats
    assert "Epoch 0" not in err + out and "it/s" not in err + out
    assert not re.search(r"^\s*0\s+Total Flops", out + err, flags=re.M | re.I)
    assert "| test (pooled) | micro-F1 | macro-F1 | auto-coded | its accuracy |" in out
    assert "| site | " in out and not re.search(r"\d\.\d{5,}", out)
    assert (
        "test/before/site/coverage" in run.data.metrics
        and "test/contradictions" in run.data.metrics
    )

    everything = _all_text(tmp_path / "mlruns.db", tmp_path / "mlruns") + out + err + caplog.text
    assert SECRET not in everything
    assert "Zebulon" not in everything
    # nor any 40-character stretch of any report
    blob = everything.lower()
    for text in df["text"]:
        t = " ".join(text.lower().split())
        for i in range(0, max(1, len(t) - 40), 40):
            assert t[i : i + 40] not in blob


@pytest.mark.parametrize("found", [[], ["avx512_bf16"]])
def test_precision_auto_trains_in_bf16_where_the_cpu_multiplies_it(
    found: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    from kinpath.phenotyping import precision

    monkeypatch.setattr(precision, "bf16_instructions", lambda: found)
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.INFO)
    c = cli(["fit", "-c", str(ROOT / "configs/mtcnn.yaml"), "--data.data",
             str(ROOT / "tests/fixtures/reports.csv"), "--trainer.fast_dev_run=true",
             "--trainer.accelerator=cpu", "--trainer.precision=auto"])  # fmt: skip
    want = "bf16-mixed" if found else "32-true"
    assert c.trainer.precision == want and c.trainer.global_step == 1
    # says what it picked and why
    assert f"trainer.precision auto: {want} (this CPU " in caplog.text
    # a precision named in the config is taken as it is
    c = cli(["fit", "-c", str(ROOT / "configs/mtcnn.yaml"), "--data.data",
             str(ROOT / "tests/fixtures/reports.csv"), "--trainer.fast_dev_run=true",
             "--trainer.precision=32-true"])  # fmt: skip
    assert c.trainer.precision == "32-true"
