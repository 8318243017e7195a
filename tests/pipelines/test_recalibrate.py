"""kinpath registry recalibrate: the same network, a decoder refitted on a site's reviewed
reports, registered with its provenance; labels outside the model's classes are refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mlflow import MlflowClient

from kinpath.pipelines.batch import load_model
from kinpath.pipelines.synthetic import synthetic_reports
from tests.pipelines.conftest import ROOT, Registered


def _cli(registered: Registered, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kinpath.pipelines.cli", "registry", "recalibrate", *args,
         "--tracking_uri", registered.tracking_uri],
        capture_output=True, text=True, env=os.environ | {"PYTHONPATH": str(ROOT)},
        cwd=registered.workdir, check=False,
    )  # fmt: skip


def test_recalibration_registers_a_version_that_names_its_base(
    registered: Registered, tmp_path: Path
) -> None:
    maps = load_model(registered.champion, registered.tracking_uri).bundle.label_maps
    site = synthetic_reports(260, seed=61, style="scanned")
    for t, classes in maps.items():  # a site's codes that the model knows
        site = site[(site[t] == "") | site[t].isin(classes)]
    site = site.head(150)
    site.to_csv(tmp_path / "site.csv", index=False)
    r = _cli(registered, "--model", registered.champion, "--reviewed", str(tmp_path / "site.csv"),
             "--name", "kinpath-test-hospitalx")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    client = MlflowClient(tracking_uri=registered.tracking_uri)
    (v,) = client.search_model_versions("name='kinpath-test-hospitalx'")
    assert v.tags["provenance.base_model"] == f"kinpath-test/{registered.version}"
    assert len(v.tags["provenance.reviewed_sha256"]) == 64
    assert v.tags["provenance.reviewed_reports"] == "150"
    base = load_model(registered.champion, registered.tracking_uri).bundle
    new = load_model("models:/kinpath-test-hospitalx/1", registered.tracking_uri).bundle
    for f in ("weights.pt", "vocab.txt", "label_maps.json"):  # the network is the base's
        assert (new.folder / f).read_bytes() == (base.folder / f).read_bytes()
    assert new.decoder.temperatures != base.decoder.temperatures  # the decoder is refitted
    assert new.drift is not None and new.drift.reports == 150  # and the site's reference


def test_labels_outside_the_models_classes_are_refused(
    registered: Registered, tmp_path: Path
) -> None:
    site = synthetic_reports(20, seed=62)
    site.loc[5, "site"] = "C99"  # report SYN-62-00005
    site.to_csv(tmp_path / "site.csv", index=False)
    r = _cli(registered, "--model", registered.champion, "--reviewed", str(tmp_path / "site.csv"),
             "--name", "kinpath-test-bad")  # fmt: skip
    assert r.returncode == 2
    assert "site" in r.stderr and "report SYN-62-00005" in r.stderr and "'C99'" in r.stderr
    assert "Traceback" not in r.stderr
    client = MlflowClient(tracking_uri=registered.tracking_uri)
    assert not client.search_model_versions("name='kinpath-test-bad'")
