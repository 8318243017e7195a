"""Unseen-institution folds: no institution in two folds, test splits untouched, and the
whole evaluation (fits, drift verdicts, recalibration, the page) on synthetic reports whose
ids are TCGA-style barcodes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from kinpath.common import InputError
from kinpath.pipelines.institutions import fold_table, institution_of, make_folds
from kinpath.pipelines.synthetic import synthetic_reports

ROOT = Path(__file__).resolve().parents[2]


def _barcoded(n: int, institutions: int) -> pd.DataFrame:
    """Synthetic reports as if from ``institutions`` TCGA sites, two reports per patient."""
    t = synthetic_reports(n, seed=3)
    tss = [f"{10 + (i // 2) % institutions:02d}" for i in range(n)]
    t["patient_id"] = [f"TCGA-{s}-{i // 2:04d}" for i, s in enumerate(tss)]
    t["report_id"] = [f"{p}-{i % 2}" for i, p in enumerate(t["patient_id"])]
    return t


def test_the_institution_is_the_barcodes_tissue_source_site() -> None:
    assert institution_of("TCGA-02-2470") == "02"
    assert institution_of("TCGA-A7-A0CE-01") == "A7"
    with pytest.raises(InputError, match="not a TCGA barcode"):
        institution_of("SYN-0-00001")


def test_folds_hold_out_whole_institutions_and_leave_the_test_splits_alone() -> None:
    t = _barcoded(400, 9)
    pool = t[t["split"].isin(["train", "val"])].copy()
    pool["institution"] = pool["report_id"].map(institution_of)
    folds = make_folds(pool, 3, seed=1)
    held = [f for f in folds if f.kind == "held-out"]
    assert len(held) == 3 and len(folds) == 6
    seen: set[str] = set()
    for f in held:
        insts = set(pool.loc[pool["report_id"].isin(f.test), "institution"])
        assert insts == set(f.institutions) and not insts & seen  # no institution twice
        seen |= insts
        # every report of a held-out institution is in its fold
        assert f.test == frozenset(pool.loc[pool["institution"].isin(insts), "report_id"])
    assert seen == set(pool["institution"])
    for f in folds:
        if f.kind != "reference":
            continue
        size = len(next(h.test for h in held if h.index == f.index))
        assert size <= len(f.test) <= size + 1  # whole patients, about the held-out size
        patients = set(pool.loc[pool["report_id"].isin(f.test), "patient_id"])
        assert f.test == frozenset(pool.loc[pool["patient_id"].isin(patients), "report_id"])
        first = list(dict.fromkeys(pool["patient_id"]))[: len(patients)]
        assert patients != set(first)  # drawn at random, not the table's first patients
        table = fold_table(pool, f)
        assert set(table.loc[table["split"] == "test", "report_id"]) == f.test
        assert "test" not in set(t.loc[t["report_id"].isin(table["report_id"]), "split"])


@pytest.mark.slow
def test_kinpath_evaluate_writes_the_three_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kinpath.pipelines.institutions import evaluate

    monkeypatch.chdir(tmp_path)
    table = tmp_path / "reports.csv"
    _barcoded(600, 6).to_csv(table, index=False)
    page = tmp_path / "docs" / "institutions.md"
    results = evaluate(
        [table], ROOT / "configs/mtcnn.yaml", tmp_path / "out", folds=2, seed=0,
        overrides={"trainer.max_epochs": 2, "model.filters": 16, "data.max_length": 200},
        recalibrate_with=[40], tracking_uri=f"sqlite:///{tmp_path / 'mlruns.db'}", docs=page,
    )  # fmt: skip
    assert sorted(results) == ["held-out-0", "held-out-1", "reference-0", "reference-1"]
    for r in results.values():
        assert r["drift"]["verdict"] in ("ok", "warn", "stop")
        assert "site/macro_f1" in r["metrics"] and "all/accuracy" in r["coding"]
    assert "40" in results["held-out-0"]["recalibration"]
    # each fold fitted on its own table: the folds' test figures differ
    assert len({json.dumps(r["metrics"], sort_keys=True) for r in results.values()}) == 4
    assert {r["reports"] for r in results.values()} != {results["held-out-0"]["reports"]}
    text = page.read_text()
    for heading in ("## The folds", "## Drift check against the outcome",
                    "## Recalibration on a held-out fold's own reports"):  # fmt: skip
        assert heading in text
    # a rerun takes the finished folds from results.json: no new fit
    again = evaluate([table], ROOT / "configs/mtcnn.yaml", tmp_path / "out", folds=2, seed=0,
                     tracking_uri=f"sqlite:///{tmp_path / 'mlruns.db'}")  # fmt: skip
    assert json.dumps(again, sort_keys=True, default=str) == json.dumps(results, sort_keys=True,
                                                                         default=str)  # fmt: skip


def test_a_registrys_facility_column_names_the_institution(tmp_path: Path) -> None:
    """Outside TCGA the institution is a column; a missing one is named before any fit."""
    from kinpath.pipelines.institutions import evaluate

    table = tmp_path / "reports.csv"
    synthetic_reports(40, seed=1).assign(patient_id=lambda t: t["report_id"]).to_csv(table)
    with pytest.raises(InputError, match="no column 'facility'"):
        evaluate([table], ROOT / "configs/mtcnn.yaml", tmp_path / "out",
                 institution_column="facility", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")  # fmt: skip
    with pytest.raises(InputError, match="not a TCGA barcode"):
        evaluate([table], ROOT / "configs/mtcnn.yaml", tmp_path / "out",
                 tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")  # fmt: skip
    with pytest.raises(InputError, match="--fit_config"):
        evaluate([table], out=tmp_path / "out")


def test_the_drift_table_counts_each_outcome_by_its_least_accurate_task() -> None:
    """Broken below 95%, below the promise at 95-97%, kept at 97% or more: the page's confusion
    table and its counts follow the folds' figures."""
    from kinpath.pipelines.institutions_report import outcome, render

    def fold(kind: str, site_accuracy: float, verdict: str) -> dict[str, object]:
        return {"kind": kind, "reports": 100, "metrics": {},
                "coding": {"site/coverage": 0.9, "site/accuracy": site_accuracy,
                           "behavior/coverage": 0.1, "behavior/accuracy": 0.5},
                "per_institution": {}, "drift": {"verdict": verdict, "alarms": []}}  # fmt: skip

    results = {
        "held-out-0": fold("held-out", 0.90, "stop"),
        "held-out-1": fold("held-out", 0.96, "warn"),
        "reference-0": fold("reference", 0.98, "ok"),
        "reference-1": fold("reference", 0.99, "warn"),
    }
    # behavior coded 10 reports, under the 20 a task needs to count: site decides
    assert [outcome(r) for r in results.values()] == [
        "broken",
        "below the promise",
        "kept the promise",
        "kept the promise",
    ]
    page = render(results, {"command": "c", "grouping": "", "machine": "m", "date": "d"})
    assert "| broken | 0 | 0 | 1 |" in page
    assert "| below the promise | 0 | 1 | 0 |" in page
    assert "| kept the promise | 1 | 1 | 0 |" in page
    assert "Broken folds flagged: 1 of 1. Folds that kept the promise flagged: 1 of 2. " in page
    assert "Folds that were not broken flagged: 2 of 3" in page
    assert "In-distribution (reference) folds flagged: 1 of 2." in page
