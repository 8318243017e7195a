"""A scoring job's summary as an MLflow run, so a nightly job's figures sit beside the
model's in the store a reviewer already reads.

Each ``kinpath predict`` (file or warehouse) becomes a run of the ``kinpath-predict``
experiment: the counts, rates and speed, and the drift check's figures and limits, as
metrics; the model version, precision, input kind and drift verdict as tags. Counts and
figures only: no report, id or input path.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

EXPERIMENT = "kinpath-predict"
COUNTS = ("records", "scored", "truncated", "errors", "records_scored_now", "notes_scored_now",
          "rows_written", "seconds", "reports_per_second", "edit_check_rate", "out_of_scope_rate")  # fmt: skip


def job_metrics(summary: Mapping[str, object]) -> dict[str, float]:
    """The summary's numbers under MLflow-safe names (``abstention_rate.site``,
    ``drift.oov_rate``, ``drift.limit.oov_rate``)."""
    out: dict[str, float] = {}
    for k in COUNTS:
        v = summary.get(k)
        if isinstance(v, int | float) and not isinstance(v, bool):
            out[k] = float(v)
    for group in ("abstention_rate", "backoff_rate"):
        for task, v in (summary.get(group) or {}).items():  # type: ignore[attr-defined]
            if isinstance(v, int | float):
                out[f"{group}.{task}"] = float(v)
    drift = summary.get("drift") or {}
    for name, prefix in (("figures", "drift."), ("limits", "drift.limit.")):
        for k, v in (drift.get(name) or {}).items():  # type: ignore[attr-defined]
            if isinstance(v, int | float):
                out[prefix + k] = float(v)
    return out


def log_job(summary: Mapping[str, object], store: str, kind: str) -> str:
    """Log the job as a finished run of :data:`EXPERIMENT` in ``store``; its run id."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(tracking_uri=store)
    exp = client.get_experiment_by_name(EXPERIMENT)
    exp_id = exp.experiment_id if exp else client.create_experiment(EXPERIMENT)
    drift = summary.get("drift") or {}
    version = str(summary.get("model_version", ""))
    tags = {
        "kinpath.model_version": version,
        "kinpath.precision": str(summary.get("precision", "")),
        "kinpath.device": str(summary.get("device", "")),
        "kinpath.input_kind": kind,
        "kinpath.drift_verdict": str(drift.get("verdict", "unknown")),  # type: ignore[attr-defined]
        "kinpath.drift_alarms": ",".join(drift.get("alarms") or []),  # type: ignore[attr-defined]
    }
    run = client.create_run(exp_id, run_name=f"predict {version}", tags=tags)
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, 0) for k, v in sorted(job_metrics(summary).items())]
    client.log_batch(run.info.run_id, metrics=metrics)
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)
