"""The TF-IDF + LR reference: each table's test split gets every figure the CNN's has."""

from pathlib import Path

import numpy as np
import pandas as pd

from kinpath.phenotyping.baseline import tfidf_baseline
from kinpath.phenotyping.config import TfidfConfig
from kinpath.phenotyping.data import ReportDataModule


def test_each_table_gets_its_own_auto_coded_share(fixtures: Path, tmp_path: Path) -> None:
    df = pd.read_csv(fixtures / "reports.csv", dtype=str, keep_default_na=False)
    paths = []
    for name, part in (("hospital-a", df.iloc[::2]), ("hospital-b", df.iloc[1::2])):
        (tmp_path / name).mkdir()
        part.to_csv(tmp_path / name / "reports.csv", index=False)
        paths.append(str(tmp_path / name / "reports.csv"))
    dm = ReportDataModule(paths, max_length=60)
    out = tfidf_baseline(dm)
    te = dm.splits["test"]
    assert dm.source_of is not None
    for j, task in enumerate(dm.tasks):
        if f"test/{task}/coverage" not in out:
            continue
        labelled = dm.labels[te, j] != -100
        n = {
            t: int((labelled & (dm.source_of[te] == t)).sum()) for t in ("hospital-a", "hospital-b")
        }
        per_table = {t: out[f"test/{t}/{task}/coverage"] for t in n if n[t]}
        assert all(0.0 <= c <= 1.0 for c in per_table.values())
        # the pooled share is the two tables' shares weighted by their labelled reports
        pooled = sum(per_table[t] * n[t] for t in per_table) / sum(n[t] for t in per_table)
        assert np.isclose(out[f"test/{task}/coverage"], pooled)


def test_the_tasks_fitted_in_parallel_give_the_figures_of_one_process(fixtures: Path) -> None:
    dm = ReportDataModule(str(fixtures / "reports.csv"), max_length=60)
    alone = tfidf_baseline(dm, TfidfConfig(n_jobs=1))
    assert alone == tfidf_baseline(dm, TfidfConfig(n_jobs=2))
    assert {k.split("/")[1] for k in alone} == set(dm.tasks)  # every task, in either
