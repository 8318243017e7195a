"""The whole pipeline on a tiny synthetic set, then a cached rerun."""

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch
import yaml

from kinpath.common import InputError
from kinpath.embeddings.word2vec import Word2VecConfig
from kinpath.kg.graph import folder_sha256
from kinpath.phenotyping.config import TfidfConfig
from kinpath.phenotyping.store import tracking_uri
from kinpath.pipelines.fits import distill_options, within_spread
from kinpath.pipelines.report import _teacher, duration
from kinpath.pipelines.run import (
    DataConfig,
    EmbeddingConfig,
    FitConfig,
    RegistryConfig,
    register_champion,
    run,
)
from kinpath.pipelines.stages import STAGE_TAG, stage_id
from kinpath.pipelines.synthetic import synthetic_reports
from tests.pipelines.test_report import check_html

# the smallest fits that still run every stage
TINY = {"trainer.max_epochs": 1, "model.filters": 8, "data.max_length": 200,
        "trainer.enable_progress_bar": False}  # fmt: skip
STAGES = ["data", "graph", "embeddings", "fit-random-plain-42", "fit-word2vec-plain-42",
          "fit-kg-joint-plain-42", "baseline", "registry", "predict", "report"]  # fmt: skip


def test_end_to_end_then_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    kw = dict(
        work=tmp_path / "work", tracking_uri=uri,
        data=DataConfig(synthetic_reports=80),
        embeddings=EmbeddingConfig(word2vec=replace(EmbeddingConfig().word2vec, vector_size=16, epochs=2, min_count=1)),
        fit=FitConfig(overrides=TINY),
        docs=tmp_path / "docs/results/run.md",
    )  # fmt: skip
    first = run(**kw)  # type: ignore[arg-type]
    assert set(first["timings"]) == set(STAGES)
    # the results page of the documentation: what made it, then the report's own sections
    published = (tmp_path / "docs/results/run.md").read_text()
    assert published.startswith("# Results of `") and "Written by that command on" in published
    # the machine, so that a reader can tell two pages' processors apart
    assert f"torch kernels {torch.backends.cpu.get_cpu_capability()}" in published.splitlines()[2]
    assert "](run/f1_by_initialization.png)" in published
    assert (tmp_path / "docs/results/run/f1_by_initialization.png").exists()
    page = (tmp_path / "work/report/results.html").read_text()
    md = (tmp_path / "work/report/results.md").read_text()
    checked = check_html(page)
    assert checked.first == "doctype html" and not checked.errors
    assert checked.h2 == re.findall(r"^## (.+)$", md, flags=re.M)
    assert (tmp_path / "work/report/f1_by_initialization.png").stat().st_size > 1000
    pred = pd.read_parquet(tmp_path / "work/predict/predictions.parquet")
    assert len(pred) == 12 and (pred["status"] == "ok").all()
    out = capsys.readouterr().out
    assert "| mtcnn kg-joint / plain |" in out and "mlflow ui --backend-store-uri" in out
    assert out.count("| method |") == 1  # one results table, not one per fit as well
    assert "micro-F1 / macro-F1 / share auto-coded" in out  # the table's legend
    assert "rare codes" in md  # macro-F1 over the codes with fewer than 10 training reports
    # each stage's time, as its stage.json recorded it, in run order; the report's own is not
    section = md.split("## Stage times", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| ([\w-]+) \| (.+) \|$", section, flags=re.M)
    assert [name for name, _ in listed][1:] == STAGES[:-1]  # after the header row
    seconds = {s: json.loads((tmp_path / "work" / s / "stage.json").read_text())["seconds"]
               for s in STAGES[:-1]}  # fmt: skip
    assert dict(listed[1:]) == {s: duration(v) for s, v in seconds.items()}
    assert f"| **total** | {duration(sum(seconds.values()))} |" in section
    # the registered model is the one the table recommends: the lowest validation loss
    fits = {s: json.loads((tmp_path / "work" / s / "stage.json").read_text())["output"]
            for s in STAGES if s.startswith("fit-")}  # fmt: skip
    best = min(fits.values(), key=lambda f: f["val_loss"])
    mlflow.set_tracking_uri(uri)
    champion = mlflow.MlflowClient().get_model_version_by_alias("kinpath-demo", "champion")
    assert champion.run_id == best["run_id"]
    # its run names the stage that made it: a later attempt closes what a killed one left open
    fit_folder = next(s for s in fits if fits[s] is best)
    tags = mlflow.MlflowClient().get_run(best["run_id"]).data.tags
    assert tags[STAGE_TAG] == stage_id(tmp_path / "work" / fit_folder)
    assert (
        "registered as models:/kinpath-demo@champion" in out
        and "lowest mean validation loss" in out
    )
    assert "Registered: the lowest mean validation loss" in md

    # reproducible (the default): the same config in a fresh folder and store, run by
    # `kinpath run` in another process with another hash seed, gives the same bytes: the
    # vectors' folders, the registered bundle, and the same figures
    again = tmp_path / "again"
    twin_config = again / "run.yaml"
    again.mkdir()
    twin_config.write_text(yaml.safe_dump({
        "work": str(again / "work"), "tracking_uri": f"sqlite:///{again / 'mlruns.db'}",
        "data": {"synthetic_reports": 80},
        "embeddings": {"word2vec": {"vector_size": 16, "epochs": 2, "min_count": 1}},
        "fit": {"overrides": TINY},
    }))  # fmt: skip
    env = os.environ | {"PYTHONHASHSEED": "7"}
    twin = subprocess.run([sys.executable, "-m", "kinpath", "run", "-c", str(twin_config)], cwd=again,
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert twin.returncode == 0, twin.stderr[-3000:]
    made = {s: json.loads((tmp_path / "work" / s / "stage.json").read_text()) for s in STAGES}
    remade = {s: json.loads((again / "work" / s / "stage.json").read_text()) for s in STAGES}
    # the same settings (the stages that write to MLflow also key on the store, which differs)
    assert all(
        made[s]["key"] == remade[s]["key"] for s in ("data", "graph", "embeddings", "baseline")
    )
    for name in ("word2vec", "kg-joint"):
        a, b = (Path(m["embeddings"]["output"][name]) for m in (made, remade))
        assert folder_sha256(a) == folder_sha256(b), name
    for s in fits:
        assert remade[s]["output"]["val_loss"] == fits[s]["val_loss"], s
        assert remade[s]["output"]["metrics"] == fits[s]["metrics"], s
    checksum = made["registry"]["output"]["bundle_sha256"]
    assert len(checksum) == 64 and remade["registry"]["output"]["bundle_sha256"] == checksum
    assert f"bundle sha256 {checksum}" in twin.stdout
    assert (
        twin.stdout.split("| method |")[1].split("stages:")[0]
        == out.split("| method |")[1].split("stages:")[0]
    )
    # what made each stage: the libraries and the thread settings
    envs = list((tmp_path / "work/environments").glob("*.json"))
    assert [made["embeddings"]["environment"]] == [e.stem for e in envs]
    recorded = json.loads(envs[0].read_text())
    assert recorded["reproducible"] and recorded["threads"]["word2vec_workers"] == 1
    assert recorded["packages"]["torch"] == torch.__version__
    assert recorded["processor"]["torch_kernels"] == torch.backends.cpu.get_cpu_capability()
    # and the results page says what made its stages
    environments = md.split("## Environment", 1)[1].split("\n## ", 1)[0]
    assert f"| {envs[0].stem} | all | " in environments
    assert f"| {torch.__version__} |" in environments

    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model("models:/kinpath-demo@champion")
    scored = model.predict(
        pd.DataFrame({"report_id": ["x"], "text": ["Left breast: invasive ductal carcinoma."]})
    )
    assert scored["report_id"].tolist() == ["x"] and scored["site_label"].iloc[0]

    second = run(**kw)  # type: ignore[arg-type]
    assert set(second["timings"].values()) == {"cached"}
    # a change to the embeddings redoes them and what depends on them, nothing upstream
    kw["embeddings"] = EmbeddingConfig(
        word2vec=Word2VecConfig(vector_size=16, epochs=3, min_count=1)
    )
    third = run(**kw)  # type: ignore[arg-type]
    assert third["timings"]["data"] == third["timings"]["graph"] == "cached"
    assert (
        third["timings"]["embeddings"] != "cached"
        and third["timings"]["fit-kg-joint-plain-42"] != "cached"
    )
    assert not (tmp_path / "work/predict/test_reports.parquet").exists()  # no text copy kept

    # another tracking store: the MLflow stages run again there, the others stay cached
    other = f"sqlite:///{tmp_path / 'other.db'}"
    kw["tracking_uri"] = other
    fourth = run(**kw)  # type: ignore[arg-type]
    assert fourth["timings"]["embeddings"] == fourth["timings"]["baseline"] == "cached"
    assert all(
        fourth["timings"][s] != "cached" for s in ("fit-random-plain-42", "registry", "predict")
    )
    mlflow.set_tracking_uri(other)
    assert mlflow.pyfunc.load_model(fourth["model"]["uri"])  # the model exists in this store

    # fit.inits decides which vectors are trained (retrofit failed with a KeyError); both
    # heads, the label-knowledge ones with options of their own, and one of them registered
    kw |= {"fit": FitConfig(inits=["random", "retrofit"], heads=["plain", "label-knowledge"], overrides=TINY,
                            heads_overrides={"label-knowledge": {"trainer.max_epochs": 2}}),
           "registry": RegistryConfig(champion="retrofit / label-knowledge")}  # fmt: skip
    fifth = run(**kw)  # type: ignore[arg-type]
    epochs = {s: json.loads((tmp_path / "work" / s / "stage.json").read_text())["output"]["epochs"]
              for s in fifth["timings"] if s.startswith("fit-")}  # fmt: skip
    assert epochs == {"fit-random-plain-42": 1, "fit-retrofit-plain-42": 1,
                      "fit-random-label-knowledge-42": 2, "fit-retrofit-label-knowledge-42": 2}  # fmt: skip
    meta = mlflow.pyfunc.load_model(fifth["model"]["uri"]).metadata.metadata
    assert meta["kinpath"]["embedding_method"] == "retrofit"
    md = (tmp_path / "work/report/results.md").read_text()
    assert "| mtcnn retrofit / label-knowledge |" in md and "| mtcnn random / plain |" in md

    # a cached stage whose MLflow run is gone is redone, not trusted
    stage = tmp_path / "work/fit-random-plain-42/stage.json"
    mlflow.MlflowClient().delete_run(json.loads(stage.read_text())["output"]["run_id"])
    sixth = run(**kw)  # type: ignore[arg-type]
    assert sixth["timings"]["fit-random-plain-42"] != "cached"
    assert sixth["timings"]["fit-retrofit-label-knowledge-42"] == "cached"

    # a second seed for one method adds its fit and leaves the first seed's cached; the table
    # shows that method's spread
    kw |= {"fit": FitConfig(inits=["random", "retrofit"], seeds=[42], overrides=TINY,
                            more_seeds={"random / plain": [7]}),
           "registry": RegistryConfig(champion="best")}  # fmt: skip
    seventh = run(**kw)  # type: ignore[arg-type]
    assert (
        seventh["timings"]["fit-random-plain-42"]
        == seventh["timings"]["fit-retrofit-plain-42"]
        == "cached"
    )
    assert seventh["timings"]["fit-random-plain-7"] != "cached"
    assert "fit-retrofit-plain-7" not in seventh["timings"]
    assert " ± " in (tmp_path / "work/report/results.md").read_text()

    # the champion's seeds as one registered model: an ensemble stage and run, its own row
    kw |= {"registry": RegistryConfig(champion="best", ensemble=True)}
    eighth = run(**kw)  # type: ignore[arg-type]
    assert eighth["timings"]["ensemble-random-plain"] != "cached"
    assert eighth["timings"]["fit-random-plain-7"] == "cached"
    model = mlflow.pyfunc.load_model(eighth["model"]["uri"])
    assert len(model.unwrap_python_model().bundle.nets) == 2
    md = (tmp_path / "work/report/results.md").read_text()
    assert "| mtcnn random / plain ensemble |" in md and "seeds 42, 7" in md
    pred = pd.read_parquet(tmp_path / "work/predict/predictions.parquet")
    assert len(pred) == 12 and (pred["status"] == "ok").all()

    # the champion ensemble distilled into one network: a stage of its own taught by the
    # ensemble's bundle, its row, and the registered model is the one the reason names
    kw |= {"registry": RegistryConfig(champion="distilled", ensemble=True)}
    ninth = run(**kw)  # type: ignore[arg-type]
    assert ninth["timings"]["distill-random-plain"] != "cached"
    assert ninth["timings"]["ensemble-random-plain"] == "cached"
    student = json.loads((tmp_path / "work/distill-random-plain/stage.json").read_text())["output"]
    client = mlflow.MlflowClient()
    taught = json.loads(Path(client.download_artifacts(
        student["run_id"], "bundle/manifests.json", str(tmp_path / "student"))).read_text())  # fmt: skip
    assert taught["teacher"]["bundle_sha256"] == eighth["model"]["bundle_sha256"]
    assert not (tmp_path / "work/distill-random-plain/bundle").exists()  # the teacher's copy
    md = (tmp_path / "work/report/results.md").read_text()
    assert "| mtcnn random / plain distilled |" in md
    nets = len(mlflow.pyfunc.load_model(ninth["model"]["uri"]).unwrap_python_model().bundle.nets)
    aliases = {
        a: str(v) for a, v in client.get_registered_model(ninth["model"]["name"]).aliases.items()
    }
    if "distilled into one network" in md:
        assert nets == 1 and "registry.champion: distilled" in md
        assert aliases["teacher"] == ninth["model"]["teacher"]["version"]
        assert "models:/kinpath-demo@teacher (version" in md
    else:
        assert nets == 2 and "the distilled network stayed below" in md
        assert "teacher" not in ninth["model"] and "teacher" not in aliases
    # whichever way the rule went here: a distilled champion's registry entry, the ensemble
    # it stands in for one version below it
    ensemble = json.loads((tmp_path / "work/ensemble-random-plain/stage.json").read_text())
    both = register_champion(student["run_id"], "kinpath-distilled", "champion",
                             mlflow.get_tracking_uri(), teacher=ensemble["output"]["run_id"])  # fmt: skip
    assert (both["version"], both["teacher"]["version"]) == ("2", "1")
    aliases = client.get_registered_model("kinpath-distilled").aliases
    assert {a: str(v) for a, v in aliases.items()} == {"teacher": "1", "champion": "2"}
    assert both["teacher"]["bundle_sha256"] == eighth["model"]["bundle_sha256"]
    assert (
        len(mlflow.pyfunc.load_model(both["teacher"]["uri"]).unwrap_python_model().bundle.nets) == 2
    )
    assert "models:/kinpath-distilled@teacher (version 1)" in _teacher(both)

    # the distillation's own fit options, over its heads': only that stage is made again
    kw |= {"registry": RegistryConfig(champion="distilled", ensemble=True,
                                      distill_overrides={"trainer.max_epochs": 2})}  # fmt: skip
    tenth = run(**kw)  # type: ignore[arg-type]
    assert tenth["timings"]["distill-random-plain"] != "cached"
    assert tenth["timings"]["ensemble-random-plain"] == "cached"
    longer = json.loads((tmp_path / "work/distill-random-plain/stage.json").read_text())["output"]
    assert (student["epochs"], longer["epochs"]) == (1, 2)


def test_a_distilled_champion_is_kept_within_the_seed_spread() -> None:
    members = [{"site": 0.80, "grade": 0.60}, {"site": 0.84, "grade": 0.62}]  # sd 0.028, 0.014
    ensemble = {"site": 0.85, "grade": 0.63}
    assert within_spread({"site": 0.83, "grade": 0.62}, ensemble, members) == (True, [])
    holds, short = within_spread({"site": 0.86, "grade": 0.60}, ensemble, members)
    assert not holds and short == ["grade 0.600 against 0.630 ± 0.014"]
    assert within_spread({"site": 0.9}, ensemble, members)[1] == ["grade: no validation figure"]


def test_a_student_starts_from_the_member_of_the_lowest_validation_loss() -> None:
    # the members in the ensemble's order: model.teacher_init numbers them the same way
    members = [{"val_loss": 2.26}, {"val_loss": 2.20}, {"val_loss": 2.27}, {"val_loss": None}]
    assert distill_options("best-member", members, {}) == {"model.teacher_init": 1}
    assert distill_options("best-member", members, {"trainer.max_epochs": 8}) == {
        "model.teacher_init": 1, "trainer.max_epochs": 8}  # fmt: skip
    # what the user gave wins; and a fresh start adds nothing, so its stage keeps its key
    assert distill_options("best-member", members, {"model.teacher_init": 2}) == {
        "model.teacher_init": 2}  # fmt: skip
    assert distill_options("fresh", members, {"trainer.max_epochs": 8}) == {"trainer.max_epochs": 8}
    with pytest.raises(InputError, match="neither 'fresh' nor 'best-member'"):
        distill_options("best", members, {})


def test_a_distilled_champion_needs_the_ensemble(tmp_path: Path) -> None:
    store = os.environ.get("MLFLOW_TRACKING_URI")
    with pytest.raises(InputError, match=r"set registry\.ensemble: true"):
        run(work=tmp_path / "work", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}",
            registry=RegistryConfig(champion="distilled"))  # fmt: skip
    assert not (tmp_path / "work").exists()  # refused before any work, the store untouched
    assert os.environ.get("MLFLOW_TRACKING_URI") == store


def test_options_for_heads_that_are_not_fitted_are_refused(tmp_path: Path) -> None:
    # a misspelt heads name would otherwise leave those fits on the shared options, silently
    fit = FitConfig(heads=["plain"], heads_overrides={"label_knowledge": {"trainer.max_epochs": 2}})
    with pytest.raises(
        InputError,
        match=r"fit\.heads_overrides: 'label_knowledge' is none of the fitted heads \(plain\)",
    ):
        run(work=tmp_path / "work", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}", fit=fit)
    assert not (tmp_path / "work").exists()
    assert fit.overrides_for("plain") == fit.overrides


def test_the_environment_and_the_project_decide_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "configs").mkdir()
    monkeypatch.chdir(tmp_path / "configs")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(None) == f"sqlite:///{tmp_path}/mlruns.db"  # not configs/mlruns.db
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri(None) == "http://127.0.0.1:5000"  # the environment wins
    assert tracking_uri("sqlite:////abs/x.db") == "sqlite:////abs/x.db"


def test_an_edit_to_the_orchestration_keeps_the_fits_of_a_given_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a user's table is only recorded by the data stage: editing pipelines/ must not redo
    # the hours of fits made from it (it did: the data stage's key held pipelines/ code)
    import kinpath.pipelines.stages as stages_module
    from kinpath.pipelines.synthetic import synthetic_reports

    monkeypatch.chdir(tmp_path)
    table = tmp_path / "reports.csv"
    synthetic_reports(60).to_csv(table, index=False)
    kw = dict(
        work=tmp_path / "work", tracking_uri=f"sqlite:///{tmp_path / 'mlruns.db'}",
        data=DataConfig(reports=[str(table)]),
        embeddings=EmbeddingConfig(word2vec=replace(EmbeddingConfig().word2vec, vector_size=16, epochs=2, min_count=1)),
        fit=FitConfig(inits=["random"], seeds=[42, 7], overrides=TINY),
        registry=RegistryConfig(champion="distilled", ensemble=True),
    )  # fmt: skip
    run(**kw)  # type: ignore[arg-type]
    checksum = stages_module.source_checksum

    def edit(module: str) -> None:
        """As if ``module`` (a file under kinpath/) had been edited since the first run."""
        monkeypatch.setattr(
            stages_module, "source_checksum",
            lambda packages=stages_module.PACKAGES: checksum(packages)
            + ("+edit" if any(module.startswith(p) for p in packages) else ""),
        )  # fmt: skip

    edit("pipelines/report.py")
    edited = run(**kw)["timings"]  # type: ignore[arg-type]
    made = ("data", "embeddings", "fit-random-plain-42", "fit-random-plain-7",
            "ensemble-random-plain", "distill-random-plain")  # fmt: skip
    assert {edited[s] for s in made} == {"cached"}
    assert edited["report"] != "cached"  # the stages that run pipelines/ code are redone
    # the code that builds an ensemble's bundle makes the ensemble, and its student, again
    edit("pipelines/ensemble.py")
    rebuilt = run(**kw)["timings"]  # type: ignore[arg-type]
    assert rebuilt["fit-random-plain-42"] == rebuilt["fit-random-plain-7"] == "cached"
    assert rebuilt["ensemble-random-plain"] != "cached" != rebuilt["distill-random-plain"]
    # the baseline's worker processes give the same figures: they are not part of its key
    assert run(**kw | {"baseline": TfidfConfig(n_jobs=1)})["timings"]["baseline"] == "cached"  # type: ignore[arg-type]
    assert run(**kw | {"baseline": TfidfConfig(C=1.0)})["timings"]["baseline"] != "cached"  # type: ignore[arg-type]


def test_an_ensembles_key_holds_every_kinpath_module_it_imports() -> None:
    """The ensemble stage is keyed on ENSEMBLE_CODE, not on all of pipelines/: a kinpath
    module that pipelines/ensemble.py comes to import must join that key, or an edit to it
    would leave a stale ensemble cached."""
    import ast

    from kinpath.pipelines.stages import ENSEMBLE_CODE

    root = Path(__file__).resolve().parents[2]
    tree = ast.parse((root / "pipelines/ensemble.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    for module in sorted(m for m in imported if m.startswith("kinpath.")):
        path = module.removeprefix("kinpath.").replace(".", "/")
        assert path == "common" or any(
            path == p.removesuffix(".py") or path.startswith(p + "/") for p in ENSEMBLE_CODE
        ), f"pipelines/ensemble.py imports {module}, which the ensemble stage's key leaves out"


def test_the_demos_word_vectors_are_the_same_every_run() -> None:
    """gensim splits a corpus into jobs of 10,000 words across its threads, and with two
    threads the vectors differ from run to run: the demo's corpus is well over one job."""
    from kinpath.embeddings.word2vec import train_word2vec

    texts = synthetic_reports(400, seed=3)["text"]
    sentences = [t.lower().split() for t in texts]
    assert sum(map(len, sentences)) > 30_000
    config = replace(EmbeddingConfig().word2vec, vector_size=16, epochs=2)  # the demo's threads
    first, _ = train_word2vec(sentences, config, 42)
    second, _ = train_word2vec(sentences, config, 42)
    assert (first.vectors == second.vectors).all()
