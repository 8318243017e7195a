"""The batch job's edges: nothing stale, nothing clobbered, one writer, safe CSV, clear errors."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from kg.errors import InputError
from pipelines.batch import load_model, predict
from pipelines.synthetic import synthetic_reports
from tests.pipelines.conftest import Registered


def _reports(path: Path, n: int, seed: int) -> Path:
    synthetic_reports(n, seed=seed)[["report_id", "text"]].to_csv(path, index=False)
    return path


def test_resume_of_a_finished_job_checks_its_input(registered: Registered, tmp_path: Path) -> None:
    model = load_model(registered.champion, registered.tracking_uri)
    out = tmp_path / "out.parquet"
    predict(model, _reports(tmp_path / "a.csv", 6, 1), out)
    again = predict(model, tmp_path / "a.csv", out, resume=True)  # same input: only a summary
    assert again["records"] == 6 and again["records_scored_now"] == 0
    with pytest.raises(InputError, match="input_sha256 changed"):
        predict(model, _reports(tmp_path / "b.csv", 4, 2), out, resume=True)
    assert len(pd.read_parquet(out)) == 6  # the old output is left as it was


def test_a_failed_start_leaves_nothing_behind(registered: Registered, tmp_path: Path) -> None:
    model = load_model(registered.champion, registered.tracking_uri)
    out = tmp_path / "out.parquet"
    with pytest.raises(InputError, match="no such input"):
        predict(model, tmp_path / "typo.csv", out)
    bad = tmp_path / "bad.csv"
    bad.write_text("id,body\nr1,a\n")  # wrong columns: fails before any chunk
    with pytest.raises(InputError, match="no column"):
        predict(model, bad, out)
    assert not (tmp_path / "out.parquet.parts").exists()
    summary = predict(model, _reports(tmp_path / "good.csv", 3, 3), out)  # the corrected command
    assert summary["records"] == 3


def test_output_is_never_the_input(registered: Registered, tmp_path: Path) -> None:
    model = load_model(registered.champion, registered.tracking_uri)
    src = _reports(tmp_path / "in.csv", 3, 4)
    before = src.read_bytes()
    for kw in ({}, {"overwrite": True}, {"resume": True}):
        with pytest.raises(InputError, match="output is the input"):
            predict(model, src, src, **kw)  # type: ignore[arg-type]
    assert src.read_bytes() == before


@pytest.mark.parametrize(("chunk", "batch"), [(-1, 32), (0, 32), (10, 0)])
def test_bad_sizes_are_refused_up_front(
    registered: Registered, tmp_path: Path, chunk: int, batch: int
) -> None:
    model = load_model(registered.champion, registered.tracking_uri)
    with pytest.raises(InputError, match="at least 1"):
        predict(model, _reports(tmp_path / "in.csv", 2, 5), tmp_path / "o.csv",
                chunk_size=chunk, batch_size=batch)  # fmt: skip
    assert not list(tmp_path.glob("o.csv*"))


def test_a_second_writer_on_the_same_output_stops(registered: Registered, tmp_path: Path) -> None:
    src = _reports(tmp_path / "in.csv", 4, 6)
    parts = tmp_path / "out.parquet.parts"
    parts.mkdir()
    fd = os.open(parts, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a first job holds it
    try:
        env = {**os.environ, "MLFLOW_TRACKING_URI": registered.tracking_uri}
        r = subprocess.run([sys.executable, "-m", "pipelines.cli", "predict", "--model", registered.champion,
                            "--input", str(src), "--output", str(tmp_path / "out.parquet"), "--resume"],
                           env=env, capture_output=True, text=True, check=False)  # fmt: skip
    finally:
        os.close(fd)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "another job is writing this output" in r.stderr
    assert not list(parts.glob("part-*"))


def test_csv_output_defuses_spreadsheet_formulas(registered: Registered, tmp_path: Path) -> None:
    model = load_model(registered.champion, registered.tracking_uri)
    df = synthetic_reports(4, seed=7)[["report_id", "text"]]
    df["report_id"] = ["=HYPERLINK(1)", "+1", "-2", "@SUM(A1)"]
    df.to_csv(tmp_path / "in.csv", index=False)
    predict(model, tmp_path / "in.csv", tmp_path / "out.csv")
    predict(model, tmp_path / "in.csv", tmp_path / "out.parquet")
    ids = pd.read_csv(tmp_path / "out.csv", dtype=str)["report_id"].tolist()
    assert ids == ["'=HYPERLINK(1)", "'+1", "'-2", "'@SUM(A1)"]
    assert (
        pd.read_parquet(tmp_path / "out.parquet")["report_id"].tolist() == df["report_id"].tolist()
    )


def test_the_resolved_version_is_what_is_loaded(
    registered: Registered, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded: list[str] = []
    real = mlflow.pyfunc.load_model

    def spy(uri: str, *a: object, **kw: object) -> object:
        loaded.append(uri)
        return real(uri, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(mlflow.pyfunc, "load_model", spy)
    m = load_model(registered.champion, registered.tracking_uri)
    assert m.version == f"{registered.name}/{registered.version}"
    assert loaded == [f"models:/{registered.name}/{registered.version}"]  # not the alias again
