"""The MLflow model registry: register a training run's model, promote it, list models.

``register`` takes the ``bundle/`` a phenotyping fit logged to its run, wraps it
as a pyfunc model (:mod:`kinpath.pipelines.model`) logged into the same run, and makes
it a new version of a named model, tagged with the run's test metrics and the
provenance (graph checksum, embedding method, corpus checksum, the bundle's checksum),
its description a model card (:mod:`kinpath.pipelines.card`). ``promote``
points an alias (``champion``) at a version; MLflow 3 aliases, not the
deprecated stages. Every loader takes ``models:/NAME@ALIAS``.

The tracking URI is the ``--tracking_uri`` option, else ``MLFLOW_TRACKING_URI``,
else the embedded default ``sqlite:///mlruns.db`` in the project folder
(:mod:`kinpath.phenotyping.store`); these commands only read or add to a store, so one that
does not exist is an error, never a new empty store.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from kinpath.common import InputError
from kinpath.kg.graph import folder_sha256
from kinpath.phenotyping.store import existing_store, using_store
from kinpath.pipelines.card import model_card
from kinpath.pipelines.model import signature

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Registered:
    name: str
    version: str
    run_id: str
    model_uri: str
    bundle_sha256: str = ""  # the registered bundle's checksum (kinpath.kg.graph.folder_sha256)


def register(
    run_id: str, name: str, uri: str | None = None, provenance: dict[str, str] | None = None
) -> Registered:
    """Wrap the run's bundle as a pyfunc model and register it as a new version of ``name``;
    ``provenance``: more of the version's ``provenance.*`` tags."""
    store = existing_store(uri)
    client = MlflowClient(tracking_uri=store)
    try:
        run = client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        raise InputError(f"no MLflow run {run_id!r} at {store}") from None
    if not any(f.path == "bundle" for f in client.list_artifacts(run_id)):
        raise InputError(f"run {run_id} has no bundle/ (was it a finished `lightning fit`?)")
    with tempfile.TemporaryDirectory() as tmp:
        bundle = client.download_artifacts(run_id, "bundle", tmp)
        manifests = json.loads((Path(bundle) / "manifests.json").read_text())
        tasks = json.loads((Path(bundle) / "network.json").read_text())["tasks"]
        emb = manifests.get("embeddings") or {}
        metadata = {
            "kinpath": {
                "tasks": tasks,
                "embedding_method": emb.get("method"),
                "graph_checksum": emb.get("graph_checksum"),
                "corpus_checksum": (emb.get("corpus") or {}).get("checksum"),
                "training_run": run_id,
                # what a rebuild is checked against: the same bytes, the same model
                "bundle_sha256": folder_sha256(Path(bundle)),
            }
        }
        with using_store(store), mlflow.start_run(run_id=run_id):  # log_model is fluent only
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(Path(__file__).with_name("model_code.py")),  # models-from-code
                artifacts={"bundle": bundle},
                signature=signature(tasks),
                metadata=metadata,
                # the defaults a loader can override (model_config={"precision": "fp32"})
                model_config={"precision": "auto", "device": "cpu"},
                code_paths=_package_dirs(),
                pip_requirements=_requirements(Path(bundle)),
            )
    tags = {f"metric.{k}": f"{v:.4f}" for k, v in run.data.metrics.items() if k.startswith("test/")}
    tags.update({f"provenance.{k}": str(v) for k, v in metadata["kinpath"].items() if k != "tasks"})
    tags.update({f"provenance.{k}": v for k, v in (provenance or {}).items()})
    # the version is made with its tags (one call, not one a tag)
    with using_store(store):
        version = str(mlflow.register_model(info.model_uri, name, tags=tags).version)
    card = model_card(client, run_id, name, version, metadata["kinpath"])
    client.update_model_version(name, version, description=card)
    log.info("registered %s version %s from run %s", name, version, run_id)
    return Registered(name, version, run_id, f"models:/{name}/{version}",
                      metadata["kinpath"]["bundle_sha256"])  # fmt: skip


def recalibrate(model: str, reviewed: Path, name: str, uri: str | None = None) -> Registered:
    """A new version of ``name``: ``model``'s network with its decoder refitted on a site's
    reviewed reports (:mod:`kinpath.phenotyping.recalibrate`), logged as a run of the
    ``kinpath-recalibration`` experiment and tagged with the base version and the reviewed
    table's checksum."""
    from kinpath.kg.reports import table_sha256
    from kinpath.phenotyping.recalibrate import recalibrate as refit
    from kinpath.pipelines.batch import load_model

    store = existing_store(uri)
    base = load_model(model, store, "fp32")
    checksum = table_sha256(reviewed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "bundle"
        figures = refit(base.bundle.folder, reviewed, folder)
        reports = json.loads((folder / "manifests.json").read_text())["recalibrations"][-1][
            "reports"
        ]
        client = MlflowClient(tracking_uri=store)
        exp = client.get_experiment_by_name("kinpath-recalibration")
        exp_id = exp.experiment_id if exp else client.create_experiment("kinpath-recalibration")
        with (
            using_store(store),
            mlflow.start_run(experiment_id=exp_id, run_name=f"recalibrate {base.version}") as run,
        ):
            mlflow.log_artifacts(str(folder), "bundle")
            mlflow.log_metrics({k.replace("/", "."): float(v) for k, v in figures.items()})
            mlflow.set_tags({"kinpath.base_model": base.version, "kinpath.reviewed_sha256": checksum,
                             "kinpath.reviewed_reports": str(reports)})  # fmt: skip
    registered = register(run.info.run_id, name, store, {
        "base_model": base.version, "reviewed_sha256": checksum, "reviewed_reports": str(reports)
    })  # fmt: skip
    card = client.get_model_version(name, registered.version).description or ""
    client.update_model_version(name, registered.version, description=card + (
        f"- Recalibrated: the network of {base.version} with its decoder refitted on {reports} "
        f"reviewed reports (sha256 {checksum}); the test figures above are the base model's.\n"
    ))  # fmt: skip
    log.info("recalibrated %s on %d reviewed reports: %s version %s", base.version, reports,
             name, registered.version)  # fmt: skip
    return registered


def _package_dirs() -> list[str]:
    """kinpath's own code travels with the model, so it loads where kinpath is not installed:
    the one ``kinpath`` package (its subpackages are the project's four folders)."""
    import kinpath

    return [str(Path(kinpath.__file__).parent)]


# the distributions kinpath's inference path imports (pipelines.model and what it loads);
# a test compares this with the imports of the modules a scoring run loads
INFERENCE_REQUIREMENTS = ("mlflow", "numpy", "pandas", "pyarrow", "scipy", "spacy", "scispacy",
                          "torch")  # fmt: skip


def _requirements(bundle: Path) -> list[str]:
    """The pinned libraries inference imports (declared, so MLflow need not load the model to
    guess), and nothing that only training needs: no Lightning or scikit-learn; gensim only
    when the tokenizer carries collocations."""
    from importlib.metadata import version

    names = list(INFERENCE_REQUIREMENTS)
    if (bundle / "tokenizer" / "collocations.pkl").exists():
        names.append("gensim")
    return [f"{n}=={version(n).split('+')[0]}" for n in names]


def promote(name: str, version: str, alias: str = "champion", uri: str | None = None) -> None:
    client = MlflowClient(tracking_uri=existing_store(uri))
    try:
        client.get_model_version(name, version)
    except mlflow.exceptions.MlflowException:
        raise InputError(f"no version {version} of model {name!r}") from None
    client.set_registered_model_alias(name, alias, version)
    log.info("%s@%s -> version %s", name, alias, version)


def list_models(uri: str | None = None) -> list[dict[str, object]]:
    client = MlflowClient(tracking_uri=existing_store(uri))
    out = []
    # every version in one search, grouped here: no filter string to quote a name into
    versions: dict[str, list] = {}
    for mv in client.search_model_versions():
        versions.setdefault(mv.name, []).append(mv)
    for rm in client.search_registered_models():
        aliases = dict(rm.aliases or {})
        for mv in sorted(versions.get(rm.name, []), key=lambda v: int(v.version), reverse=True):
            out.append({
                "name": rm.name,
                "version": mv.version,
                "aliases": [a for a, v in aliases.items() if str(v) == str(mv.version)],
                "run_id": mv.run_id,
                "created": _utc(mv.creation_timestamp),
                "tags": dict(mv.tags),
            })  # fmt: skip
    return out


def _utc(millis: int | None) -> str:
    """MLflow's epoch milliseconds as a UTC date and time."""
    if millis is None:
        return ""
    return dt.datetime.fromtimestamp(millis / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M")
