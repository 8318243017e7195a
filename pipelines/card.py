"""The model card of a registered version: its MLflow model version description.

A reviewer who opens a version in MLflow reads what it is for, what it was trained on, how
well it coded each test split, and what it never does (a task it never auto-codes, sources
unlike its validation reports), without opening the run. Written from the training run's
metrics, its ``data/data_summary.json`` and ``config.yaml``, and the model's provenance:
counts, names of tables and checksums only, never report text.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import yaml
from mlflow import MlflowClient

INTENDED_USE = (
    "Codes the primary site, subsite, laterality, behavior, histology and grade of a tumour "
    "from its pathology report, for cancer registry abstraction. A field is auto-coded only "
    "where its confidence passed a threshold bounded, on the validation reports, for 97% "
    "accuracy at 95% confidence; every other field goes to a registrar (`kinpath review`). "
    "Not for decisions about a patient's care."
)


def _artifact(client: MlflowClient, run_id: str, path: str) -> str | None:
    folder, _, _ = path.rpartition("/")
    if path not in {f.path for f in client.list_artifacts(run_id, folder or None)}:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        return Path(client.download_artifacts(run_id, path, tmp)).read_text()


def _tables(config: str | None) -> list[str]:
    """The report tables' file names from a fit's saved config (names, not paths)."""
    if config is None:
        return []
    data = (yaml.safe_load(config) or {}).get("data") or {}
    tables = data.get("data") if isinstance(data, dict) else None
    if isinstance(tables, str):
        tables = [tables]
    return [Path(str(t)).parent.name + "/" + Path(str(t)).name for t in tables or []]


def _figures(metrics: dict[str, float], tasks: list[str]) -> tuple[list[str], list[str]]:
    """Table rows per test split and task, and the tasks never auto-coded on any split."""
    splits = sorted(
        {m.group(1) for k in metrics if (m := re.match(r"test/(.+)/site/macro_f1$", k))}
    )
    prefixes = [(s, f"test/{s}/") for s in splits] or [("test", "test/")]
    rows, coded = [], {t: False for t in tasks}
    for split, p in prefixes:
        for t in tasks:
            f1 = metrics.get(f"{p}{t}/macro_f1")
            if f1 is None:
                continue
            share = metrics.get(f"{p}{t}/coverage", 0.0)
            acc = metrics.get(f"{p}{t}/covered_accuracy")
            coded[t] = coded[t] or share > 0
            acc_cell = f"{acc:.3f}" if share > 0 and acc is not None else "—"
            rows.append(f"| {split} | {t} | {f1:.3f} | {share:.3f} | {acc_cell} |")
    return rows, [t for t, c in coded.items() if not c and rows]


def model_card(client: MlflowClient, run_id: str, name: str, version: str, provenance: dict) -> str:
    """The card of version ``version`` of ``name``, registered from run ``run_id``."""
    metrics = client.get_run(run_id).data.metrics
    tasks = list(provenance.get("tasks") or [])
    summary_text = _artifact(client, run_id, "data/data_summary.json")
    summary = json.loads(summary_text) if summary_text else {}
    tables = _tables(_artifact(client, run_id, "config.yaml"))
    rows, never = _figures(metrics, tasks)

    lines = [f"# {name} version {version}", "", f"**Intended use.** {INTENDED_USE}", ""]
    lines.append("**Training data.**")
    if tables:
        lines.append(f"- report tables: {', '.join(tables)}")
    if summary.get("reports"):
        counts = ", ".join(f"{s} {n:,}" for s, n in summary["reports"].items())
        lines.append(f"- reports per split: {counts}")
    method = provenance.get("embedding_method")
    if method:
        lines.append(
            f"- word vectors: {method}, corpus checksum {provenance.get('corpus_checksum')}"
        )
    else:
        lines.append("- word vectors: none (random initialization)")
    if provenance.get("graph_checksum"):
        lines.append(f"- knowledge graph checksum: {provenance['graph_checksum']}")
    lines.append(f"- training run: {run_id}")
    if provenance.get("bundle_sha256"):
        lines.append(f"- bundle checksum (a rebuild with the same checksum is this model): "
                     f"{provenance['bundle_sha256']}")  # fmt: skip
    lines.append("")
    if rows:
        lines += [
            "**Figures on the test splits** (macro-F1; share auto-coded after decoding; "
            "accuracy of what is auto-coded):",
            "",
            "| split | task | macro-F1 | auto-coded | accuracy |",
            "| --- | --- | --- | --- | --- |",
            *rows,
            "",
        ]
    lines.append("**Known limits.**")
    for t in never:
        lines.append(f"- {t} is never auto-coded: its validation accuracy did not support the "
                     "97% bound at any threshold, so every report's "
                     f"{t} goes to review.")  # fmt: skip
    lines.append("- The 97% bound holds for reports like the validation reports. Before scoring "
                 "a new hospital's or scanner's reports, run `kinpath drift`; where it warns, "
                 "review a few hundred and `kinpath registry recalibrate`.")  # fmt: skip
    lines.append("- Codes outside the training and graph classes cannot be emitted; reports "
                 "unlike every training site are flagged `out_of_scope` and not auto-coded.")  # fmt: skip
    return "\n".join(lines) + "\n"
