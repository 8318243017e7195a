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
    assert list(out.columns) == [c["name"] for c in model.metadata.signature.outputs.to_dict()]
    for t in ("site", "subsite", "laterality", "behavior", "histology", "grade"):
        top3 = [json.loads(x) for x in out[f"{t}_top3"]]
        assert all([p for _, p in row] == sorted((p for _, p in row), reverse=True) for row in top3)
    # the decoded record is consistent: the subsite lies in the site, no side at an unpaired organ
    for _, r in out.iterrows():
        assert r["subsite_label"][:3] == r["site_label"]
        if r["site_label"] in ("C18", "C61", "C73"):
            assert r["laterality_label"] == "not applicable"
    assert {"edit_checks", "out_of_scope", "site_backoff"} <= set(out.columns)


def test_version_carries_metrics_provenance_and_no_input_example(registered: Registered) -> None:
    rows = registry.list_models(registered.tracking_uri)
    (row,) = [r for r in rows if r["name"] == registered.name]
    assert row["aliases"] == ["champion"]
    tags = row["tags"]
    assert "metric.test/site/macro_f1" in tags and "provenance.training_run" in tags
    info = mlflow.models.get_model_info(registered.champion)
    assert [c["name"] for c in info.signature.inputs.to_dict()] == ["report_id", "text"]
    assert info.saved_input_example_info is None  # no report text stored with the model


def test_a_name_with_a_quote_lists(registered: Registered) -> None:
    rows = registry.list_models(registered.tracking_uri)
    run_id = next(r["run_id"] for r in rows if r["name"] == registered.name)
    quoted = "o'neil-kinpath"
    registry.register(str(run_id), quoted, registered.tracking_uri)
    names = {r["name"] for r in registry.list_models(registered.tracking_uri)}
    assert {quoted, registered.name} <= names
