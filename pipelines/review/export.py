"""``kinpath review export``: the registrars' decisions as a training table.

One row per reviewed report, in the training format that ``--data.data`` and
``kinpath run`` read beside the other tables: ``report_id``, ``patient_id``, one
column per task (the latest decision on that field; empty where nobody decided,
which the loss masks), ``split`` and ``text``. The text is read from the reports
file at export time, never from the store (which holds none). The split is
drawn by patient (a hash of the patient id, or of the report id where the reports
have no ``patient_id``): the same patient always lands in the same split, and a
re-export keeps every earlier report where it was.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pandas as pd

from kinpath.common import InputError, redact
from kinpath.kg.reports import read_records, table_sha256
from kinpath.pipelines.review.store import DecisionStore

log = logging.getLogger(__name__)
TASKS = ("site", "subsite", "laterality", "behavior", "histology", "grade")


def split_of(patient: str, val_share: float = 0.15) -> str:
    h = int(hashlib.sha256(patient.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "val" if h < val_share else "train"


def export(
    store: str,
    reports: Path | None,
    out: Path,
    id_column: str = "report_id",
    text_column: str = "text",
    patient_column: str = "patient_id",
    val_share: float = 0.15,
    warehouse: str | None = None,
    schema: str = "public",
) -> dict[str, object]:
    """Write the table; returns counts (reports, fields per task, ids not found). The text
    comes from ``reports``, or from ``warehouse``'s ``NOTE`` (patients: ``person_id``)."""
    out = Path(out)
    if out.suffix.lower() != ".csv":
        raise InputError("the export is a .csv table", path=out)
    latest = DecisionStore(store, schema).latest()
    if not latest:
        raise InputError(f"no decisions in the store {redact(store)}")
    wanted = {rid for rid, _ in latest}
    texts: dict[str, str] = {}
    patients: dict[str, str] = {}
    if warehouse is not None:
        texts, patients = _notes(warehouse, schema, wanted)
    else:
        assert reports is not None
        checksum = table_sha256(reports)
        other = sum(d.input_sha256 != checksum for d in latest.values())
        if other:
            log.warning("%d decision(s) were made on another version of the reports file "
                        "(checksum differs); their text is read from this one", other)  # fmt: skip
        for r in read_records(reports, id_column, text_column):
            if not r.error and r.report_id in wanted:
                texts[r.report_id] = r.text
    if warehouse is None and patient_column and Path(str(reports)).suffix.lower() == ".csv":
        cols = pd.read_csv(reports, dtype=str, keep_default_na=False, nrows=0).columns
        if patient_column in cols:
            t = pd.read_csv(
                reports, dtype=str, keep_default_na=False, usecols=[id_column, patient_column]
            )
            patients = dict(zip(t[id_column], t[patient_column], strict=True))
    missing = sorted(wanted - set(texts))
    if missing:
        log.warning("%d reviewed report id(s) are not in %s (first: %s): left out",
                    len(missing), reports or "NOTE", missing[0])  # fmt: skip
    rows = []
    for rid in sorted(texts):
        patient = patients.get(rid) or rid
        row = {"report_id": rid, "patient_id": patient}
        for t in TASKS:
            d = latest.get((rid, t))
            row[t] = d.registrar_code if d else ""
        row["split"] = split_of(patient, val_share)
        row["text"] = texts[rid]
        rows.append(row)
    table = pd.DataFrame(rows, columns=["report_id", "patient_id", *TASKS, "split", "text"])
    tmp = out.with_name(f".{out.name}.tmp")
    table.to_csv(tmp, index=False)
    tmp.replace(out)
    fields = {t: int((table[t] != "").sum()) for t in TASKS}
    return {"out": str(out), "reports": len(table), "fields": fields, "not_found": len(missing),
            "splits": table["split"].value_counts().to_dict()}  # fmt: skip


def _notes(uri: str, schema: str, ids: set[str]) -> tuple[dict[str, str], dict[str, str]]:
    """The text (read as the scoring job reads it) and person of these notes."""
    from psycopg import sql

    from kinpath.pipelines.cdm import connect, name
    from kinpath.pipelines.omop import _record

    numeric = sorted(int(i) for i in ids if i.isdigit())
    texts, patients = {}, {}
    with connect(uri) as conn:
        rows = conn.execute(
            sql.SQL("SELECT note_id, person_id, textsend(note_text) FROM {} "
                    "WHERE note_id = ANY(%s)").format(name(schema, "note")),
            [numeric],
        ).fetchall()  # fmt: skip
    for note_id, person, raw in rows:
        rec = _record(1, note_id, raw)
        if not rec.error:
            texts[str(note_id)], patients[str(note_id)] = rec.text, str(person)
    return texts, patients
