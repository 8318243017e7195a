"""kinpath drift and the drift figures of every batch job, on the registered test model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from kinpath.pipelines.batch import load_model, predict
from kinpath.pipelines.synthetic import synthetic_reports
from tests.pipelines.conftest import ROOT, Registered


def _drift(registered: Registered, path: Path) -> tuple[int, dict]:
    r = subprocess.run(
        [sys.executable, "-m", "kinpath.pipelines.cli", "drift", "--model", registered.champion,
         "--input", str(path), "--tracking_uri", registered.tracking_uri],
        capture_output=True, text=True, env=os.environ | {"PYTHONPATH": str(ROOT)},
        cwd=registered.workdir, check=False,
    )  # fmt: skip
    assert r.returncode in (0, 3), r.stderr[-2000:]
    return r.returncode, json.loads(r.stdout)


def test_another_report_style_is_flagged_and_the_training_style_is_not(
    registered: Registered, tmp_path: Path
) -> None:
    synthetic_reports(300, seed=41).to_csv(tmp_path / "house.csv", index=False)
    synthetic_reports(300, seed=41, style="scanned").to_csv(tmp_path / "scanned.csv", index=False)
    code, house = _drift(registered, tmp_path / "house.csv")
    assert (code, house["verdict"]) == (0, "ok"), house
    code, scanned = _drift(registered, tmp_path / "scanned.csv")
    assert scanned["verdict"] in ("warn", "stop") and code == (
        3 if scanned["verdict"] == "stop" else 0
    )
    assert scanned["figures"]["oov_rate"] > house["figures"]["oov_rate"]
    assert scanned["reports"] == 300 and set(scanned["limits"]) == set(scanned["figures"])


def test_every_predict_summary_carries_the_drift_figures(
    registered: Registered, tmp_path: Path
) -> None:
    synthetic_reports(60, seed=42)[["report_id", "text"]].to_csv(tmp_path / "in.csv", index=False)
    model = load_model(registered.champion, registered.tracking_uri)
    summary = predict(model, tmp_path / "in.csv", tmp_path / "out.parquet", chunk_size=25)
    drift = summary["drift"]
    assert isinstance(drift, dict) and drift["verdict"] in ("ok", "warn", "stop")
    assert drift["reports"] == 60 and "vector_shift" in drift["figures"]


def test_the_drift_reference_holds_no_report_text(registered: Registered) -> None:
    bundle = load_model(registered.champion, registered.tracking_uri).bundle
    assert bundle.drift is not None
    blob = (bundle.folder / "drift.json").read_text().lower()
    texts = pd.read_csv(ROOT / "tests/fixtures/reports.csv")["text"]
    for t in texts:
        t = " ".join(str(t).lower().split())
        for i in range(0, max(1, len(t) - 20), 20):
            assert t[i : i + 20] not in blob
