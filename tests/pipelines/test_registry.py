import json
import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from kinpath.kg.graph import folder_sha256
from kinpath.pipelines import registry
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
    mlflow.set_tracking_uri(registered.tracking_uri)  # not left to whichever test ran before
    info = mlflow.models.get_model_info(registered.champion)
    assert [c["name"] for c in info.signature.inputs.to_dict()] == ["report_id", "text"]
    assert info.saved_input_example_info is None  # no report text stored with the model
    # the checksum an auditor's rebuild is compared with is that of the bundle that loads
    bundle = mlflow.pyfunc.load_model(registered.champion).unwrap_python_model().bundle
    assert tags["provenance.bundle_sha256"] == folder_sha256(bundle.folder)


def test_version_description_is_a_model_card(registered: Registered) -> None:
    """A reviewer reads use, data, per-split figures and limits in MLflow, from the run's
    own figures: every figure in the card is one of the run's test metrics."""
    client = mlflow.MlflowClient(tracking_uri=registered.tracking_uri)
    mv = client.get_model_version(registered.name, registered.version)
    card = mv.description or ""
    assert card.startswith(f"# {registered.name} version {registered.version}")
    assert "**Intended use.**" in card and "**Known limits.**" in card
    assert "report tables: fixtures/reports.csv" in card
    metrics = client.get_run(mv.run_id).data.metrics
    rows = [r for r in card.splitlines() if r.startswith("| test |")]
    assert {r.split(" | ")[1] for r in rows} == {"site", "subsite", "laterality", "behavior",
                                                  "histology", "grade"}  # fmt: skip
    for r in rows:
        task, f1, share = r.split(" | ")[1:4]
        assert float(f1) == pytest.approx(metrics[f"test/{task}/macro_f1"], abs=5e-4)
        assert float(share) == pytest.approx(metrics[f"test/{task}/coverage"], abs=5e-4)
    never = [t for t in ("site", "grade") if metrics[f"test/{t}/coverage"] == 0]
    for t in never:
        assert f"- {t} is never auto-coded" in card


def test_a_name_with_a_quote_lists(registered: Registered) -> None:
    rows = registry.list_models(registered.tracking_uri)
    run_id = next(r["run_id"] for r in rows if r["name"] == registered.name)
    quoted = "o'neil-kinpath"
    registry.register(str(run_id), quoted, registered.tracking_uri)
    names = {r["name"] for r in registry.list_models(registered.tracking_uri)}
    assert {quoted, registered.name} <= names


SCORE_WITHOUT_LIGHTNING = """
import json, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pytorch_lightning", "lightning", "lightning_fabric"):
            raise ImportError("Lightning is not installed here: " + name)
sys.meta_path.insert(0, Block())
import mlflow
import pandas as pd
from importlib.metadata import packages_distributions
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model(sys.argv[2])
out = model.predict(pd.DataFrame({"report_id": ["r1"], "text": ["Left breast: invasive ductal carcinoma."]}))
dists = packages_distributions()
loaded = sorted({d for m in list(sys.modules) for d in dists.get(m.split(".")[0], [])})
print(json.dumps({"site": out["site_label"].iloc[0], "loaded": loaded}))
"""


def _required_by(names: list[str]) -> set[str]:
    """Every distribution the named ones require, transitively (extras aside)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        try:
            reqs = metadata.requires(todo.pop()) or []
        except metadata.PackageNotFoundError:
            continue
        for r in reqs:
            if "extra ==" in r:
                continue
            name = re.split(r"[ ;<>=!\[(~]", r, maxsplit=1)[0].lower()
            if name not in seen:
                seen.add(name)
                todo.append(name)
    return seen


def _direct_dependencies() -> set[str]:

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {d.split("==")[0].split("[")[0].lower() for d in deps}


def test_registered_model_scores_without_lightning_and_declares_what_it_imports(
    registered: Registered,
) -> None:
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-c", SCORE_WITHOUT_LIGHTNING, registered.tracking_uri, registered.champion],
        capture_output=True, text=True, check=False, cwd=registered.workdir,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["site"]
    imported = {d.lower() for d in result["loaded"]} & _direct_dependencies()
    pulled_in = _required_by(["mlflow", "torch", "spacy", "scispacy", "pandas", "scipy"])
    mlflow.set_tracking_uri(registered.tracking_uri)
    reqs_file = mlflow.pyfunc.get_model_dependencies(registered.champion)
    declared = {
        line.split("==")[0].lower()
        for line in Path(reqs_file).read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert "pytorch-lightning" not in declared and "scikit-learn" not in declared
    assert declared <= imported  # nothing declared that scoring does not import
    assert imported - declared <= pulled_in  # nothing imported that is not declared or pulled in


def test_registry_list_is_a_table_and_json_on_request(registered: Registered) -> None:
    env = {**os.environ, "MLFLOW_TRACKING_URI": registered.tracking_uri}
    cmd = [sys.executable, "-m", "kinpath.pipelines.cli", "registry", "list"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["name", "version", "aliases", "created", "(UTC)", "run", "site",
                                "F1", "histology", "F1"]  # fmt: skip
    mine = next(line for line in lines if line.startswith("kinpath-test "))
    assert "champion" in mine and re.search(r"\b20\d\d-\d\d-\d\d \d\d:\d\d\b", mine)
    assert re.search(r"\b[01]\.\d{4}\b", mine)  # the headline site macro-F1
    assert len(lines) < 20  # a line per version, not 75 lines of JSON each
    r = subprocess.run([*cmd, "--json"], env=env, capture_output=True, text=True, check=False)
    rows = json.loads(r.stdout)
    assert any(
        v["name"] == "kinpath-test" and "metric.test/site/macro_f1" in v["tags"] for v in rows
    )


def test_library_calls_leave_the_callers_tracking_uri_as_it_was(
    registered: Registered, tmp_path: Path
) -> None:
    """Loading and registering go to the store they are given and put MLflow's global
    tracking URI back: a notebook's next MLflow call still reaches its own store."""
    from kinpath.pipelines.batch import load_model

    mine = f"sqlite:///{tmp_path / 'notebook.db'}"
    before = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(mine)
    try:
        load_model(registered.champion, registered.tracking_uri)
        run_id = (
            mlflow.MlflowClient(registered.tracking_uri)
            .get_model_version(registered.name, registered.version)
            .run_id
        )
        registry.register(run_id, "kinpath-scope", registered.tracking_uri)
        assert mlflow.get_tracking_uri() == mine
        assert os.environ["MLFLOW_TRACKING_URI"] == mine
    finally:
        mlflow.set_tracking_uri(before)  # type: ignore[arg-type]
        if env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env
