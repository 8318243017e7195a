import json

import mlflow
import pandas as pd

from pipelines import registry
from tests.pipelines.conftest import ROOT, Registered


def test_registered_model_scores_through_the_alias(registered: Registered) -> None:
    mlflow.set_tracking_uri(registered.tracking_uri)
    model = mlflow.pyfunc.load_model(registered.champion)
    reports = pd.read_csv(
        ROOT / "tests/fixtures/reports.csv", dtype=str, keep_default_na=False
    ).head(5)
    out = model.predict(reports[["report_id", "text"]])
    assert out["report_id"].tolist() == reports["report_id"].tolist()
    for t in ("site", "subsite", "laterality", "behavior", "histology", "grade"):
        assert {f"{t}_label", f"{t}_prob", f"{t}_abstain", f"{t}_top3"} <= set(out.columns)
        assert out[f"{t}_prob"].between(0, 1).all()
        top3 = json.loads(out[f"{t}_top3"].iloc[0])
        assert top3[0][0] == out[f"{t}_label"].iloc[0] and len(top3) <= 3
    assert set(out["site_label"]) <= {"C18", "C34", "C50", "C61", "C64", "C73"}


def test_version_carries_metrics_provenance_and_no_input_example(registered: Registered) -> None:
    rows = registry.list_models(registered.tracking_uri)
    (row,) = [r for r in rows if r["name"] == registered.name]
    assert row["aliases"] == ["champion"]
    tags = row["tags"]
    assert "metric.test/site/macro_f1" in tags and "provenance.training_run" in tags
    info = mlflow.models.get_model_info(registered.champion)
    assert [c["name"] for c in info.signature.inputs.to_dict()] == ["report_id", "text"]
    assert info.saved_input_example_info is None  # no report text stored with the model
