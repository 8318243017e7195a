"""The registered model: an MLflow pyfunc around a phenotyping bundle.

Input: a table with ``report_id`` and ``text``. Output, one row per report, in
the input's order: ``report_id``; per task ``<task>_label``, ``<task>_prob``,
``<task>_abstain`` (the probability is below the task's threshold, saved with
the model) and ``<task>_top3`` (JSON: ``[[label, prob], ...]``); and
``truncated`` (the report was longer than the model reads).

The model carries everything it needs as artifacts (the bundle: weights,
network shape, tokenizer, vocabulary, label maps, thresholds, manifests) and
its provenance as metadata (the graph's and the corpus's checksums, the
embedding method). Its signature is declared column by column: no report text
is stored as an input example.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types import ColSpec, Schema

from kg.errors import InputError
from phenotyping.bundle import Bundle, encode, load_bundle, score_ids

INPUT_COLUMNS = ("report_id", "text")


def output_columns(tasks: list[str]) -> list[str]:
    cols = ["report_id"]
    for t in tasks:
        cols += [f"{t}_label", f"{t}_prob", f"{t}_abstain", f"{t}_top3"]
    return [*cols, "truncated"]


def signature(tasks: list[str]) -> ModelSignature:
    inputs = Schema([ColSpec("string", c) for c in INPUT_COLUMNS])
    outs = [ColSpec("string", "report_id")]
    for t in tasks:
        outs += [
            ColSpec("string", f"{t}_label"),
            ColSpec("double", f"{t}_prob"),
            ColSpec("boolean", f"{t}_abstain"),
            ColSpec("string", f"{t}_top3"),
        ]
    outs.append(ColSpec("boolean", "truncated"))
    return ModelSignature(inputs=inputs, outputs=Schema(outs))  # type: ignore[arg-type]


def predictions(bundle: Bundle, ids: list[list[int]], cut: np.ndarray, report_ids: list[str],
                batch_size: int = 32, pad_to: int | None = None) -> pd.DataFrame:  # fmt: skip
    """The output table for already-encoded reports."""
    probs = score_ids(bundle, ids, batch_size, pad_to)
    out: dict[str, Any] = {"report_id": report_ids}
    for t in bundle.tasks:
        p = probs[t]
        names = np.array(bundle.label_maps[t], dtype=object)
        best = p.argmax(1)
        top = np.argsort(-p, axis=1)[:, :3]
        out[f"{t}_label"] = names[best] if len(names) else np.array([""] * len(p), dtype=object)
        out[f"{t}_prob"] = p[np.arange(len(p)), best].astype(float)
        out[f"{t}_abstain"] = out[f"{t}_prob"] < bundle.thresholds.get(t, 1.01)
        out[f"{t}_top3"] = [
            json.dumps([[str(names[j]), round(float(p[i, j]), 4)] for j in row])
            for i, row in enumerate(top)
        ]
    out["truncated"] = cut.astype(bool)
    return pd.DataFrame(out, columns=output_columns(bundle.tasks))


class KinpathModel(PythonModel):
    """pyfunc wrapper; the bundle folder is the ``bundle`` artifact."""

    def load_context(self, context: PythonModelContext) -> None:
        self.bundle = load_bundle(Path(context.artifacts["bundle"]))

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict | None = None,
    ) -> pd.DataFrame:
        missing = [c for c in INPUT_COLUMNS if c not in model_input.columns]
        if missing:
            raise InputError(f"input lacks column(s) {missing}; expected {list(INPUT_COLUMNS)}")
        texts = model_input["text"].fillna("").astype(str).tolist()
        ids, cut = encode(self.bundle, texts)
        return predictions(self.bundle, ids, cut, model_input["report_id"].astype(str).tolist())
