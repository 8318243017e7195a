"""Cached stages of ``kinpath run``: a stage reruns only when its key changes.

A stage's key is the checksum of its settings, of the keys of the stages it reads and of
the source code of the kinpath packages it runs (:func:`source_checksum`); its folder holds
a ``stage.json`` with the key, the seconds it took, the environment that ran it
(:mod:`kinpath.pipelines.environment`) and its output. A stage whose outputs are
gone from the tracking store (``exists``) is redone even with its key unchanged.

Every MLflow run a stage starts carries the tag ``kinpath.stage`` (this machine and the
stage's folder). A process killed mid-stage (kill -9, the end of a machine's session)
cannot close its runs, which the tracking UI would show as running forever; the stage's
next attempt marks those it finds still RUNNING as KILLED, and says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from kinpath.kg.graph import file_sha256
from kinpath.pipelines.runconfig import GraphConfig

log = logging.getLogger(__name__)

PACKAGES = ("kg", "embeddings", "phenotyping", "pipelines")
FIT_PACKAGES = ("kg", "embeddings", "phenotyping")
# an ensemble's bundle is built by pipelines/ensemble.py (which imports no other pipelines
# module): keyed on all of pipelines/, every edit to the orchestration made the ensembles and
# the distillation behind them again (6-9 min and 20-40 min on the TCGA table)
ENSEMBLE_CODE = (*FIT_PACKAGES, "pipelines/ensemble.py")
STAGE_TAG = "kinpath.stage"


class Stages:
    """Runs stages in order, skipping those whose key matches their stage.json."""

    def __init__(self, work: Path, environment: str | None = None, tracking_uri: str | None = None):
        self.work = work
        self.environment = environment  # the id of work/environments/<id>.json, if recorded
        self.tracking_uri = tracking_uri  # the store the stages' runs go to (None: MLflow's)
        self.keys: dict[str, str] = {}
        self.outputs: dict[str, dict] = {}
        # each stage's seconds and environment as its stage.json holds them (a cached stage's
        # are those of the run that made it)
        self.made: dict[str, dict] = {}
        self.timings: dict[str, str] = {}

    def run(
        self,
        name: str,
        settings: object,
        needs: list[str],
        fn: Callable[[Path], dict],
        exists: Callable[[dict], bool] | None = None,
        packages: tuple[str, ...] = PACKAGES,
    ) -> dict:
        """Run ``fn`` into the stage's folder, or reuse its output if its key is unchanged
        and ``exists(output)`` (when given) confirms that what it made is still there;
        ``packages``: the kinpath packages, or single modules of one, whose code the stage
        runs (:func:`source_checksum`)."""
        code = source_checksum(packages)
        key = hashlib.sha256(
            json.dumps(
                {"settings": settings, "needs": [self.keys[n] for n in needs], "code": code},
                sort_keys=True,
                default=str,
            ).encode()
        ).hexdigest()[:16]
        folder = self.work / name
        state = folder / "stage.json"
        if state.exists():
            saved = json.loads(state.read_text())
            if saved.get("key") == key and exists is not None and not exists(saved["output"]):
                log.warning(
                    "stage %-12s: its outputs are gone from the tracking store; redoing it", name
                )
            elif saved.get("key") == key:
                log.info("stage %-12s cached (%s)", name, key)
                self.keys[name], self.outputs[name] = key, saved["output"]
                self.made[name] = saved
                self.timings[name] = "cached"
                return saved["output"]
        stage = stage_id(folder)
        if folder.exists():  # an earlier attempt, finished or not
            close_abandoned_runs(stage, self.tracking_uri)
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        log.info("stage %-12s running", name)
        t = time.perf_counter()
        with run_tags({STAGE_TAG: stage}):
            output = fn(folder)
        seconds = time.perf_counter() - t
        made = {"key": key, "seconds": round(seconds, 1), "environment": self.environment}
        state.write_text(json.dumps(made | {"output": output}, indent=2, default=str) + "\n")
        self.keys[name], self.outputs[name], self.made[name] = key, output, made
        self.timings[name] = f"{seconds:.0f}s"
        log.info("stage %-12s done in %.1fs", name, seconds)
        return output

    def seconds(self) -> dict[str, float]:
        """The seconds each stage run so far took when it was made (its stage.json), in
        order: a cached stage's are those of the run that made it."""
        return {name: self.made[name]["seconds"] for name in self.keys}

    def environments(self) -> dict[str, dict]:
        """The environments that made the stages run so far (``work/environments/<id>.json``,
        where recorded), each with the names of its stages, in run order."""
        made: dict[str, dict] = {}
        for name in self.keys:
            ident = self.made[name].get("environment")
            path = self.work / "environments" / f"{ident}.json"
            if ident in made:
                made[ident]["stages"].append(name)
            elif ident and path.exists():
                made[ident] = json.loads(path.read_text()) | {"stages": [name]}
        return made


def stage_id(folder: Path) -> str:
    """The ``kinpath.stage`` tag of a stage's runs: the machine and the stage's folder."""
    return f"{socket.gethostname()}:{folder.resolve()}"


@contextmanager
def run_tags(tags: dict[str, str]) -> Iterator[None]:
    """Tag every MLflow run started in the block: Lightning's MLFlowLogger and
    ``mlflow.start_run`` both add the tags of MLflow's run context, which reads them from
    ``MLFLOW_RUN_CONTEXT`` (JSON) when the run is made. Tags already there are kept."""
    before = os.environ.get("MLFLOW_RUN_CONTEXT")
    os.environ["MLFLOW_RUN_CONTEXT"] = json.dumps(json.loads(before or "{}") | tags)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MLFLOW_RUN_CONTEXT", None)
        else:
            os.environ["MLFLOW_RUN_CONTEXT"] = before


def close_abandoned_runs(stage: str, tracking_uri: str | None = None) -> list[str]:
    """Mark KILLED the runs tagged with ``stage`` that are still RUNNING: stages run one at
    a time in one process, so before the stage's next attempt starts, such a run belongs to
    an attempt whose process died. Returns their ids."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    # RUNNING runs are few; the tag is compared here, so that no folder name needs quoting
    running = client.search_runs(experiments, filter_string="attributes.status = 'RUNNING'")
    abandoned = [r.info.run_id for r in running if r.data.tags.get(STAGE_TAG) == stage]
    for run_id in abandoned:
        client.set_terminated(run_id, "KILLED")
    if abandoned:
        log.warning(
            "stage %s: an earlier attempt was interrupted; its MLflow runs %s were left "
            "RUNNING and are now marked KILLED",
            Path(stage.split(":", 1)[1]).name, ", ".join(abandoned),
        )  # fmt: skip
    return abandoned


def source_checksum(packages: tuple[str, ...] = PACKAGES) -> str:
    """A checksum of these kinpath packages' code and package data (an entry is a package,
    ``"phenotyping"``, or one module of one, ``"pipelines/ensemble.py"``), and of
    ``kinpath/common.py`` that every stage runs: a change to it redoes the stages that run
    them."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for pkg in packages:
        if not (root / pkg).exists():  # a renamed module must not drop out of the key quietly
            raise FileNotFoundError(f"stage code {pkg!r} is not in {root}")
        files = [root / pkg] if (root / pkg).is_file() else sorted((root / pkg).rglob("*"))
        for f in files:
            if f.is_file() and f.suffix in (".py", ".csv", ".yaml"):
                h.update(str(f.relative_to(root)).encode() + f.read_bytes())
    common = Path(__file__).parent.parent / "common.py"  # kinpath/common.py: every stage's
    h.update(b"common.py" + common.read_bytes())
    return h.hexdigest()[:16]


def run_exists(run_id: str) -> bool:
    import mlflow

    try:
        return mlflow.MlflowClient().get_run(run_id).info.lifecycle_stage != "deleted"
    except mlflow.exceptions.MlflowException:
        return False


def version_exists(name: str, version: str) -> bool:
    import mlflow

    try:
        mlflow.MlflowClient().get_model_version(name, version)
    except mlflow.exceptions.MlflowException:
        return False
    return True


def source_settings(graph: GraphConfig) -> dict:
    out: dict[str, object] = asdict(graph)
    if graph.umls:
        out["files"] = {p.name: file_sha256(p) for p in sorted(Path(graph.umls).glob("*.RRF"))}
    if graph.obo:
        out["obo_sha256"] = file_sha256(Path(graph.obo))
    return out


def jsonable(x: object) -> dict:
    return json.loads(json.dumps(asdict(x), default=dict))  # type: ignore[call-overload]
