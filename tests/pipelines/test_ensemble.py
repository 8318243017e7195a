"""A seed ensemble: two fits of the fixture reports averaged, logged, registered and scored."""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from kinpath.common import InputError
from kinpath.phenotyping.bundle import encode, load_bundle, save_ensemble, score_ids
from tests.pipelines.conftest import _inside

ROOT = Path(__file__).resolve().parents[2]
SECRET = "Ottoline Brackenbury-Vesk"  # a made-up patient name planted in one report


@dataclass(frozen=True)
class Seeds:
    uri: str
    work: Path
    members: list[str]
    ensemble: dict
    log: str
    texts: pd.DataFrame


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Seeds:
    from kinpath.phenotyping.cli import cli
    from kinpath.pipelines.ensemble import ensemble

    work = tmp_path_factory.mktemp("ensemble")
    df = pd.read_csv(ROOT / "tests/fixtures/reports.csv", dtype=str, keep_default_na=False)
    df.loc[0, "text"] = f"Patient {SECRET} seen today. " + df.loc[0, "text"]
    df.to_csv(work / "reports.csv", index=False)
    uri = f"sqlite:///{work / 'mlruns.db'}"
    runs = []
    handler = _Capture()
    logging.getLogger().addHandler(handler)
    try:
        with _inside(work, uri):
            for s in (1, 2):
                c = cli(["fit", "-c", str(ROOT / "configs/mtcnn.yaml"), "--data.data", "reports.csv",
                         "--trainer.max_epochs=2", "--model.filters=16", "--data.max_length=200",
                         f"--seed_everything={s}", "--trainer.enable_progress_bar=false"], quiet=True)  # fmt: skip
                runs.append(c.trainer.logger.run_id)  # type: ignore[union-attr]
            out = ensemble(runs, uri)
    finally:
        logging.getLogger().removeHandler(handler)
    return Seeds(uri, work, runs, out, "\n".join(handler.lines), df)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _bundle(uri: str, run_id: str, to: Path) -> Path:
    return Path(mlflow.MlflowClient(uri).download_artifacts(run_id, "bundle", str(to)))


def test_ensemble_scores_the_mean_of_its_members(seeds: Seeds, tmp_path: Path) -> None:
    ens = load_bundle(
        _bundle(seeds.uri, seeds.ensemble["run_id"], tmp_path / "e"), precision="fp32"
    )
    members = [
        load_bundle(_bundle(seeds.uri, r, tmp_path / r), precision="fp32") for r in seeds.members
    ]
    assert len(ens.nets) == 2 and ens.manifests["ensemble"]["members"][1]["seed"] == 2
    ids = encode(ens, seeds.texts["text"].tolist()).ids
    probs, sim = score_ids(ens, ids)
    parts = [score_ids(m, ids) for m in members]
    for t in ens.tasks:
        np.testing.assert_allclose(probs[t], np.mean([p[t] for p, _ in parts], 0), atol=1e-6)
        np.testing.assert_allclose(probs[t].sum(1), 1.0, atol=1e-5)
    assert sim is not None
    np.testing.assert_allclose(sim, np.mean([s for _, s in parts], 0), atol=1e-6)
    # the decoder was fitted on the ensemble's validation probabilities, not copied from a member
    assert ens.decoder.temperatures != members[0].decoder.temperatures
    # and the drift reference on its own document vectors (the members' mean)
    assert ens.drift is not None and members[0].drift is not None
    assert ens.drift.center != members[0].drift.center


def test_ensemble_run_holds_the_fits_figures_and_registers(seeds: Seeds, tmp_path: Path) -> None:
    from kinpath.phenotyping.decode import decode
    from kinpath.pipelines import registry

    client = mlflow.MlflowClient(seeds.uri)
    run = client.get_run(seeds.ensemble["run_id"])
    member = client.get_run(seeds.members[0])
    shared = {k for k in member.data.metrics if k.startswith("test/")}
    assert shared <= set(run.data.metrics)  # every test figure a fit logs, under its name
    assert "val/loss" in run.data.metrics and "test/before/site/coverage" in run.data.metrics
    assert run.info.run_name == "mtcnn-ensemble-s1-s2"
    assert run.data.tags["kinpath.ensemble_of"] == ",".join(seeds.members)
    assert {"bundle", "ensemble.json", "test"} <= {
        f.path for f in client.list_artifacts(run.info.run_id)
    }

    r = registry.register(run.info.run_id, "kinpath-ensemble", seeds.uri)
    registry.promote("kinpath-ensemble", r.version, "champion", seeds.uri)
    mlflow.set_tracking_uri(seeds.uri)
    model = mlflow.pyfunc.load_model("models:/kinpath-ensemble@champion")
    out = model.predict(seeds.texts[["report_id", "text"]])
    assert list(out["report_id"]) == list(seeds.texts["report_id"])
    bundle = model.unwrap_python_model().bundle  # type: ignore[attr-defined]
    assert len(bundle.nets) == 2
    ids = encode(bundle, seeds.texts["text"].tolist()).ids
    probs, sim = score_ids(bundle, ids)
    d = decode(probs, bundle.decoder, sim)
    for t in bundle.tasks:
        assert list(out[f"{t}_label"]) == list(d.labels[t])
        assert list(out[f"{t}_abstain"]) == list(d.abstain[t])


def test_ensemble_keeps_no_report_text(seeds: Seeds) -> None:
    parts = [seeds.log, json.dumps(seeds.ensemble)]
    con = sqlite3.connect(seeds.work / "mlruns.db")
    for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'"):
        for row in con.execute(f"SELECT * FROM {table}"):
            parts += [str(v) for v in row]
    # every file of the store but kinpath's own code, which a registered model carries (the
    # synthetic generator's templates are the fixture reports' sentences)
    for f in (seeds.work / "mlruns").rglob("*"):
        if f.is_file() and f.suffix != ".py":
            parts.append(f.read_bytes().decode("utf-8", "replace"))
    blob = "\n".join(parts).lower()
    assert "ottoline" not in blob and "brackenbury" not in blob
    for text in seeds.texts["text"]:
        t = " ".join(text.lower().split())
        for i in range(0, max(1, len(t) - 40), 40):
            assert t[i : i + 40] not in blob


def test_fits_of_another_config_are_refused_by_name(seeds: Seeds, tmp_path: Path) -> None:
    from kinpath.pipelines.ensemble import ensemble

    client = mlflow.MlflowClient(seeds.uri)
    bundle = _bundle(seeds.uri, seeds.members[1], tmp_path / "b")
    cfg_file = Path(client.download_artifacts(seeds.members[1], "config.yaml", str(tmp_path)))
    cfg = yaml.safe_load(cfg_file.read_text())
    cfg["model"]["dropout"] = 0.1
    cfg_file.write_text(yaml.safe_dump(cfg))
    exp = client.get_run(seeds.members[1]).info.experiment_id
    with mlflow.start_run(experiment_id=exp) as other:  # a fit logged with another dropout
        mlflow.log_artifact(str(cfg_file))
        mlflow.log_artifacts(str(bundle), artifact_path="bundle")
    with _inside(seeds.work, seeds.uri), pytest.raises(InputError, match=r"model\.dropout"):
        ensemble([seeds.members[0], other.info.run_id], seeds.uri)
    with pytest.raises(InputError, match="two or more"):
        ensemble([seeds.members[0], seeds.members[0]], seeds.uri)


def test_members_that_read_reports_differently_are_refused(seeds: Seeds, tmp_path: Path) -> None:
    a = _bundle(seeds.uri, seeds.members[0], tmp_path / "a")
    b = Path(shutil.copytree(_bundle(seeds.uri, seeds.members[1], tmp_path / "b"), tmp_path / "b2"))
    (b / "vocab.txt").write_text((b / "vocab.txt").read_text() + "anotherword\n")
    with pytest.raises(InputError, match=r"vocab\.txt differs") as e:
        save_ensemble(tmp_path / "out", [a, b], [{}, {}])
    assert str(b) in str(e.value)


def test_the_same_fits_make_the_same_ensemble_bytes(seeds: Seeds, tmp_path: Path) -> None:
    # no clock and no run id in the bundle: an auditor's rebuild checks out by its checksum
    from kinpath.kg.graph import folder_sha256
    from kinpath.pipelines.ensemble import ensemble

    with _inside(seeds.work, seeds.uri):
        again = ensemble(seeds.members, seeds.uri)
    assert again["run_id"] != seeds.ensemble["run_id"]
    first, second = (
        _bundle(seeds.uri, r, tmp_path / r) for r in (seeds.ensemble["run_id"], again["run_id"])
    )
    assert folder_sha256(first) == folder_sha256(second)
    named = json.loads(Path(mlflow.MlflowClient(seeds.uri).download_artifacts(
        again["run_id"], "ensemble.json", str(tmp_path))).read_text())["members"]  # fmt: skip
    assert [m["run_id"] for m in named] == seeds.members  # the run says which fits it averaged
