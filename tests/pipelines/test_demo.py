"""The demo as a new user meets it, then two reports it must not auto-code to a wrong site."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest

COLON = (
    "SPECIMEN: sigmoid colon, sigmoid colectomy.\nFINAL DIAGNOSIS: Sigmoid colon, sigmoid "
    "colectomy: adenocarcinoma, moderately differentiated. Margins are free of tumor. "
    "Lymph nodes: 0/14 positive."
)
MELANOMA = (  # skin is no site of the demo's model: it must not be coded as one of its sites
    "SPECIMEN: skin, left forearm, wide local excision.\nFINAL DIAGNOSIS: Skin, left forearm, "
    "excision: malignant melanoma, superficial spreading type, Breslow thickness 1.2 mm, "
    "Clark level IV. Margins are free of melanoma."
)


@pytest.mark.slow
def test_demo_does_not_auto_code_a_wrong_site(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    r = subprocess.run([sys.executable, "-m", "kinpath.pipelines.cli", "demo", "--work", str(tmp_path / "demo")],
                       env=env, cwd=tmp_path, capture_output=True, text=True, check=False)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("| task |") == 1  # one results table
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model("models:/kinpath-demo@champion")
    out = model.predict(
        pd.DataFrame({"report_id": ["colon", "melanoma"], "text": [COLON, MELANOMA]})
    )
    colon, melanoma = out.iloc[0], out.iloc[1]
    assert colon["site_abstain"] or colon["site_label"] == "C18"
    assert melanoma["site_abstain"]  # abstained or out of scope: never a wrong site unseen
    for _, row in out.iterrows():
        if row["site_label"] in ("C18", "C61", "C73"):
            assert row["laterality_label"] == "not applicable"
