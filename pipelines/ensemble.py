"""``kinpath registry ensemble RUN RUN RUN``: several seeds' fits as one registrable model.

Fetches each run's ``bundle/`` and resolved ``config.yaml`` from MLflow, checks
that the fits differ only in their seed (and run name and checkpoint folder),
reads the data the way the fits did (the config's ``data`` section, paths
relative to the folder the fits ran in), builds the ensemble
(:func:`kinpath.phenotyping.ensemble.build_ensemble`) and logs it as a new run of the
members' experiment: params (member runs and seeds, no report text), the
validation and test figures under the fits' names, ``bundle/`` (which
``kinpath registry register`` takes like a fit's), and the decoder and plots
under ``test/``. ``kinpath run`` calls the same (``registry.ensemble``).
"""

from __future__ import annotations

import copy
import json
import logging
import re
import tempfile
from pathlib import Path

import mlflow
import yaml
from mlflow import MlflowClient

from kinpath.common import InputError
from kinpath.phenotyping.store import tracking_uri, using_store

log = logging.getLogger(__name__)

# what may differ between the fits of one ensemble (dotted paths into the resolved config)
PER_MEMBER = ("seed_everything", "trainer.logger", "checkpoint.dirpath", "ckpt_path")
# the data options that name files or folders
DATA_PATHS = ("data", "embeddings", "graph", "valid_combinations")


def ensemble(run_ids: list[str], uri: str | None = None, run_name: str | None = None) -> dict:
    """Build and log the ensemble of these fits; its run id, validation loss and figures."""
    from kinpath.phenotyping.data import ReportDataModule
    from kinpath.phenotyping.ensemble import build_ensemble
    from kinpath.phenotyping.network import KNOWLEDGE_HEADS

    if len(set(run_ids)) < 2:
        raise InputError(f"an ensemble needs two or more distinct runs, not {run_ids}")
    store = tracking_uri(uri)
    client = MlflowClient(tracking_uri=store)
    with tempfile.TemporaryDirectory() as tmp:
        members, configs, runs = [], [], []
        for rid in run_ids:
            try:
                run = client.get_run(rid)
            except mlflow.exceptions.MlflowException:
                raise InputError(f"no MLflow run {rid!r} at {tracking_uri(uri)}") from None
            names = {f.path for f in client.list_artifacts(rid)}
            if not {"bundle", "config.yaml"} <= names:
                raise InputError(
                    f"run {rid} has no bundle/ or config.yaml (a finished `lightning fit`?)"
                )
            members.append(Path(client.download_artifacts(rid, "bundle", f"{tmp}/{rid}")))
            cfg = yaml.safe_load(
                Path(client.download_artifacts(rid, "config.yaml", f"{tmp}/{rid}")).read_text()
            )
            configs.append(cfg)
            runs.append(run)
        configs = [_with_defaults(c) for c in configs]
        shared = _without_member_keys(configs[0])
        for rid, cfg in zip(run_ids[1:], configs[1:], strict=True):
            if _without_member_keys(cfg) != shared:
                raise InputError(f"run {rid} was fitted with another config than run {run_ids[0]} "
                                 f"(it differs in {_differences(shared, _without_member_keys(cfg))}): "
                                 "an ensemble's fits differ only in their seed")  # fmt: skip
        seeds = [int(c.get("seed_everything", 0)) for c in configs]
        heads = (configs[0].get("model") or {}).get("heads", "plain")
        data = dict(shared["data"]) | {
            "graph_codes": heads in KNOWLEDGE_HEADS,
            "seed": seeds[0],
        }
        log.info("reading the members' data (%s)", ", ".join(map(str, _as_list(data["data"]))))
        dm = ReportDataModule(**data)
        # the bundle names its members by what made them (run name, seed), so that the same
        # fits give the same bytes; the run ids are this run's tag and config/ensemble.json
        provenance = [
            {"run_name": r.info.run_name, "seed": s} for r, s in zip(runs, seeds, strict=True)
        ]
        result = build_ensemble(members, Path(tmp) / "bundle", dm, provenance, Path(tmp) / "test")
        name = run_name or _ensemble_name([r.info.run_name or "" for r in runs], seeds)
        experiment = runs[0].info.experiment_id
        with (
            using_store(store),
            mlflow.start_run(experiment_id=experiment, run_name=name) as active,
        ):
            mlflow.log_params({"ensemble.members": len(run_ids), "ensemble.seeds": json.dumps(seeds),
                               "model.heads": heads})  # fmt: skip
            mlflow.set_tags({"kinpath.ensemble_of": ",".join(run_ids),
                             "embeddings.method": runs[0].data.tags.get("embeddings.method", ""),
                             "kg.checksum": runs[0].data.tags.get("kg.checksum", "")})  # fmt: skip
            mlflow.log_metrics(result.metrics)
            (Path(tmp) / "config").mkdir()
            named = [p | {"run_id": r} for p, r in zip(provenance, run_ids, strict=True)]
            (Path(tmp) / "config" / "ensemble.json").write_text(
                json.dumps({"members": named, "config": shared}, indent=2, default=str) + "\n"
            )
            mlflow.log_artifacts(str(Path(tmp) / "config"))
            mlflow.log_artifacts(str(result.folder), artifact_path="bundle")
            (Path(tmp) / "test" / "decoder.json").write_text(
                json.dumps(result.decoder.as_dict(), indent=2)
            )
            mlflow.log_artifacts(str(Path(tmp) / "test"), artifact_path="test")
            run_id = active.info.run_id
    log.info("ensemble of %s logged as run %s (%s)", ", ".join(run_ids), run_id, name)
    return {"run_id": run_id, "run_name": name, "val_loss": result.val_loss, "seeds": seeds,
            "metrics": {k: v for k, v in result.metrics.items() if k.startswith("test/")}}  # fmt: skip


def _with_defaults(cfg: dict) -> dict:
    """The model and data options a config lacks (options kinpath gained after that fit) at
    their defaults, so a fit from before an option existed compares equal to one made with
    the option at its default."""
    import inspect

    from kinpath.phenotyping.data import ReportDataModule
    from kinpath.phenotyping.module import MTCNNModule

    out = copy.deepcopy(cfg)
    for section, cls in (("model", MTCNNModule), ("data", ReportDataModule)):
        given = out.get(section)
        if not isinstance(given, dict):
            continue
        for name, p in inspect.signature(cls.__init__).parameters.items():
            if name not in given and name != "self" and p.default is not inspect.Parameter.empty:
                given[name] = json.loads(json.dumps(p.default))  # tuples as YAML's lists
    return out


def _without_member_keys(cfg: dict) -> dict:
    """The config less what may differ between members, its data paths resolved (a fit run
    with ``../shared/data/x.csv`` and one with ``/work/shared/data/x.csv`` read the same)."""
    out = copy.deepcopy(cfg)
    data = out.get("data")
    if isinstance(data, dict):
        for k in (k for k in DATA_PATHS if k in data):
            v = data[k]
            data[k] = [_resolved(x) for x in v] if isinstance(v, list) else _resolved(v)
    for dotted in PER_MEMBER:
        *parents, last = dotted.split(".")
        node: object = out
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return out


def _resolved(x: object) -> object:
    if isinstance(x, str) and x and Path(x).exists():
        return str(Path(x).resolve())
    return x


def _differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """The dotted keys where two configs differ (names only: no values are printed)."""
    out = []
    for k in sorted(a.keys() | b.keys(), key=str):
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            out += _differences(x, y, f"{prefix}{k}.")
        elif x != y:
            out.append(f"{prefix}{k}")
    return out


def _ensemble_name(names: list[str], seeds: list[int]) -> str:
    """``mtcnn-word2vec-label-knowledge-s42`` and its seeds 43, 44 →
    ``mtcnn-word2vec-label-knowledge-ensemble-s42-s43-s44``."""
    stems = {re.sub(r"-s\d+$", "", n) for n in names}
    stem = stems.pop() if len(stems) == 1 else "mtcnn"
    return f"{stem}-ensemble-" + "-".join(f"s{s}" for s in seeds)


def _as_list(x: object) -> list:
    return list(x) if isinstance(x, list | tuple) else [x]
