"""Every emitted code carries its evidence: offsets into the text, never the text."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from kinpath.pipelines.batch import load_model, predict
from kinpath.pipelines.synthetic import HISTOLOGIES, synthetic_reports
from tests.pipelines.conftest import Registered

TASKS = ("site", "subsite", "laterality", "behavior", "histology", "grade")
NAME = "Zebulon Quixotehart"  # a made-up patient name planted in every report


def _scored(registered: Registered, tmp_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    reports = synthetic_reports(60, seed=77, noise=0.0)
    reports["text"] = "Patient: " + NAME + ".\n" + reports["text"]
    reports[["report_id", "text"]].to_csv(tmp_path / "in.csv", index=False)
    model = load_model(registered.champion, registered.tracking_uri)
    predict(model, tmp_path / "in.csv", tmp_path / "out.parquet", chunk_size=25)
    return reports, pd.read_parquet(tmp_path / "out.parquet")


def test_evidence_lies_in_the_text_and_points_at_the_deciding_phrase(
    registered: Registered, tmp_path: Path
) -> None:
    reports, out = _scored(registered, tmp_path)
    assert len(out) == len(reports) and (out["status"] == "ok").all()
    names = {h.code: [*h.names, *h.in_situ, *([h.abbreviation] if h.abbreviation else [])]
             for h in HISTOLOGIES}  # fmt: skip
    top_on = any_on = right = 0
    for text, truth, (_, row) in zip(
        reports["text"], reports["histology"], out.iterrows(), strict=True
    ):
        for t in TASKS:
            spans = json.loads(row[f"{t}_evidence"])
            assert len(spans) <= 3
            for start, end, weight in spans:
                assert 0 <= start < end <= len(text) and weight > 0
            if row[f"{t}_label"]:
                assert spans, f"{t} of {row['report_id']} has a code and no evidence"
        if row["histology_label"] == truth:
            right += 1
            spans = json.loads(row["histology_evidence"])
            where = [m.span() for n in names[truth] for m in re.finditer(re.escape(n), text, re.I)]
            on = [any(a < end and start < b for a, b in where) for start, end, _ in spans]
            top_on += on[0]
            any_on += any(on)
    # the reports also name a histology they rule out ("Negative for ...") and the site, which
    # a model trained for 3 epochs leans on too: the coded phrase is nearly always among the
    # spans, and most often the first
    assert right >= 15, right
    assert any_on / right >= 0.9 and top_on / right >= 0.6, (top_on, any_on, right)


def test_no_output_column_holds_report_text(registered: Registered, tmp_path: Path) -> None:
    _, out = _scored(registered, tmp_path)
    for col in out.columns:
        assert not out[col].astype(str).str.contains("Zebulon|Quixotehart").any(), col
    assert all(re.fullmatch(r"\[(\[\d+, \d+, [-\d.e]+\](, )?)*\]", v)
               for t in TASKS for v in out[f"{t}_evidence"])  # fmt: skip
