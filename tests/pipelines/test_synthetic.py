from pathlib import Path

import pandas as pd

from kinpath.kg.graph import build_graph
from kinpath.pipelines.synthetic import HISTOLOGIES, SITES, synthetic_reports, write_mini_graph


def test_deterministic_and_labelled() -> None:
    a, b = synthetic_reports(40, seed=3), synthetic_reports(40, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(synthetic_reports(40, seed=4))
    assert set(a["site"]) <= {s.code for s in SITES}
    assert set(a["histology"]) <= {h.code for h in HISTOLOGIES}
    paired = {s.code for s in SITES if s.paired}
    assert (a.loc[~a["site"].isin(paired), "laterality"] == "").all()
    assert set(a["split"]) == {"train", "val", "test"}


def test_committed_fixture_is_the_generators_output(fixtures: Path) -> None:
    committed = pd.read_csv(fixtures / "reports.csv", dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(committed, synthetic_reports(150, seed=0).astype(str))


def test_mini_graph_builds(tmp_path: Path) -> None:
    res = build_graph(tmp_path / "g", umls_dirs=[write_mini_graph(tmp_path / "META")])
    assert (
        res.counts["concepts"] > 30
        and res.counts["relations"] > 50
        and res.counts["skipped_rows"] == 0
    )
