"""The registered model: an MLflow pyfunc around a phenotyping bundle.

Input: a table with ``report_id`` and ``text``. Output, one row per report, in
the input's order: ``report_id``; ``status`` (``ok``, ``truncated``, ``error``) and
``error`` (``kind: detail`` as :mod:`kinpath.kg.reports` names them: ``empty_text``,
``missing_id``, ``duplicate_id``, ``malformed_row``; the rest of an error row is
empty); per task ``<task>_label`` (the decoded code:
consistent across tasks, see :mod:`kinpath.phenotyping.decode`), ``<task>_prob`` (its
calibrated confidence), ``<task>_abstain`` (not auto-coded: to review),
``<task>_backoff`` (the label is the NOS parent of an uncertain fine code) and
``<task>_top3`` (JSON: ``[[label, prob], ...]``, the head's own calibrated
probabilities) and ``<task>_evidence`` (JSON: ``[[start, end, weight], ...]``, at
most three character spans of the text that most support the emitted code,
best first: :mod:`kinpath.phenotyping.evidence`; offsets only); ``edit_checks`` (the failed checks, comma-separated, empty
when none: a record with one is never auto-coded), ``out_of_scope`` (unlike
the training reports: nothing auto-coded) and ``truncated`` (the report was
longer than the model reads).

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

from kinpath.common import InputError
from kinpath.kg.reports import Record, frame_records
from kinpath.phenotyping import evidence
from kinpath.phenotyping.bundle import Bundle, Encoding, encode, load_bundle, score
from kinpath.phenotyping.decode import calibrate, decode
from kinpath.phenotyping.drift import Accumulator, Scored

INPUT_COLUMNS = ("report_id", "text")
TASK_COLUMNS = (("label", "string"), ("prob", "double"), ("abstain", "boolean"),
                ("backoff", "boolean"), ("top3", "string"), ("evidence", "string"))  # fmt: skip
RECORD_COLUMNS = (("edit_checks", "string"), ("out_of_scope", "boolean"), ("truncated", "boolean"))
TRUNCATED = "truncated: longer than the model reads"

# What each output column means: the documentation's output reference is generated from this
# and from output_types, and its build fails on a column missing here.
COLUMN_DOCS = {
    "report_id": "the input's id",
    "status": "`ok`, `truncated`, or `error`; an error row's other columns are empty",
    "error": "for an error row, `kind: detail` (`empty_text`, `missing_id`, `duplicate_id`, ...)",
    "<task>_label": "the decoded code (consistent across tasks; a back-off NOS code where `_backoff`)",
    "<task>_prob": "its calibrated confidence",
    "<task>_abstain": "not auto-coded: to review",
    "<task>_backoff": "the label is the NOS parent of an uncertain fine code",
    "<task>_top3": "JSON `[[label, prob], ...]`: the head's own calibrated probabilities",
    "<task>_evidence": "JSON `[[start, end, weight], ...]`: up to three character spans of the text "
    "that most support the emitted code, best first (offsets into the text the job read, never "
    "the words)",
    "edit_checks": "failed checks, comma-separated (`site_histology`); a record with one is never "
    "auto-coded",
    "out_of_scope": "unlike every training site: nothing of it auto-coded",
    "truncated": "the report was longer than the model reads and was scored on its first tokens",
}


def output_types(tasks: list[str]) -> dict[str, str]:
    """Every output column and its MLflow type, in order."""
    cols = {"report_id": "string", "status": "string", "error": "string"}
    for t in tasks:
        cols |= {f"{t}_{k}": v for k, v in TASK_COLUMNS}
    return cols | dict(RECORD_COLUMNS)


def output_columns(tasks: list[str]) -> list[str]:
    return list(output_types(tasks))


def signature(tasks: list[str]) -> ModelSignature:
    # the inputs are typed but not required: MLflow's own check of a missing column answers
    # with the request's data in its message (its scoring server adds it to every error it
    # gets from the model); KinpathModel.predict names the column and never the data
    inputs = Schema([ColSpec("string", c, required=False) for c in INPUT_COLUMNS])
    outs = [ColSpec(v, k) for k, v in output_types(tasks).items()]
    return ModelSignature(inputs=inputs, outputs=Schema(outs))  # type: ignore[arg-type]


def predictions(
    bundle: Bundle,
    encoded: Encoding,
    report_ids: list[str],
    batch_size: int = 32,
    pad_to: int | None = None,
    drift: Accumulator | None = None,
) -> pd.DataFrame:
    """The output table for already-encoded reports; ``drift`` (with a model that carries a
    drift reference) adds these reports to a batch's drift figures."""
    watch = drift is not None and bundle.drift is not None
    scores = score(bundle, encoded.ids, batch_size, pad_to, evidence=True, vectors=watch)
    probs = scores.probs
    d = decode(probs, bundle.decoder, scores.similarity)
    if watch:
        assert drift is not None and bundle.drift is not None and scores.vectors is not None
        seen = Scored(scores.vectors, encoded.ids, d.out_of_scope, d.probs, d.labels,
                      bundle.decoder.thresholds)  # fmt: skip
        drift.add(bundle.drift, seen)
    cut = encoded.cut.astype(bool)
    assert scores.evidence is not None
    out: dict[str, Any] = {
        "report_id": report_ids,
        "status": np.where(cut, "truncated", "ok"),
        "error": np.where(cut, TRUNCATED, ""),
    }
    for t in bundle.tasks:
        # a temperature-scaled softmax can round to 1.0000001: a probability column is [0, 1]
        p = np.clip(calibrate(probs[t], bundle.decoder.temperatures.get(t, 1.0)), 0.0, 1.0)
        names = np.array(bundle.label_maps[t], dtype=object)
        top = np.argsort(-p, axis=1)[:, :3]
        out[f"{t}_label"] = d.labels[t]
        out[f"{t}_prob"] = np.clip(d.probs[t].astype(float), 0.0, 1.0)
        out[f"{t}_abstain"] = d.abstain[t]
        out[f"{t}_backoff"] = d.backoff[t]
        out[f"{t}_top3"] = [
            json.dumps([[str(names[j]), round(float(p[i, j]), 4)] for j in row])
            for i, row in enumerate(top)
        ]
        out[f"{t}_evidence"] = [
            evidence.as_json(evidence.char_spans(e, encoded.spans[i]))
            for i, e in enumerate(scores.evidence[t])
        ]
    out["edit_checks"] = [",".join(c) for c in d.edit_checks]
    out["out_of_scope"] = d.out_of_scope
    out["truncated"] = cut
    return pd.DataFrame(out, columns=output_columns(bundle.tasks))


def record_rows(
    records: list[Record], scored: pd.DataFrame | None, tasks: list[str]
) -> pd.DataFrame:
    """One output row per record, in order: its scored row (``scored`` is indexed by record
    number), or for a bad record an error row with its kind and detail, the rest empty.
    The batch job and the served model both answer this way."""
    rows = [
        {"report_id": r.report_id, "status": "error", "error": f"{r.error}: {r.detail}"}
        if r.error or scored is None
        else scored.loc[r.number].to_dict()
        for r in records
    ]
    return pd.DataFrame(rows, columns=output_columns(tasks))


class KinpathModel(PythonModel):
    """pyfunc wrapper; the bundle folder is the ``bundle`` artifact."""

    def load_context(self, context: PythonModelContext) -> None:
        """``model_config={"precision": "fp32"}`` at load time scores as trained; the
        default, ``auto``, uses int8 convolutions on a CPU for plain heads and checked bf16
        for label-knowledge heads on a CPU with bf16 in hardware (phenotyping.bundle).
        ``{"device": "cuda"}`` scores on a GPU (``auto``: one where torch sees it); the
        default is the CPU."""
        config = getattr(context, "model_config", None) or {}
        self.bundle = load_bundle(
            Path(context.artifacts["bundle"]), device=config.get("device", "cpu"),
            precision=config.get("precision", "auto"),
        )  # fmt: skip

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict | None = None,
    ) -> pd.DataFrame:
        """One row per input row, in order. A row that cannot be scored (empty or missing text,
        an empty or repeated id) is a ``status`` ``error`` row with the batch job's error kind,
        as ``kinpath predict`` writes it. Errors name columns and rows, never the data."""
        if not isinstance(model_input, pd.DataFrame):
            raise InputError(f"input is a {type(model_input).__name__}, not a table with "
                             f"columns {list(INPUT_COLUMNS)}")  # fmt: skip
        missing = [c for c in INPUT_COLUMNS if c not in model_input.columns]
        if missing:
            raise InputError(f"input lacks column(s) {missing}; expected {list(INPUT_COLUMNS)}")
        records = frame_records(model_input.reset_index(drop=True))
        good = [r for r in records if not r.error]
        scored = None
        if good:
            encoded = encode(self.bundle, [r.text for r in good])
            scored = predictions(self.bundle, encoded, [r.report_id for r in good])
            scored.index = [r.number for r in good]
        return record_rows(records, scored, self.bundle.tasks)
