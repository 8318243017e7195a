import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from kinpath.common import InputError
from kinpath.pipelines.batch import load_model, predict
from kinpath.pipelines.synthetic import synthetic_reports
from tests.pipelines.conftest import Registered

GOOD = "Left breast, lumpectomy: infiltrating duct carcinoma, grade 2. Margins free."


def _bad_csv(path: Path) -> None:
    """Every bad-record kind in one CSV, between good records."""
    text = (
        "report_id,text\n"
        f'g1,"{GOOD}"\n'
        "e1,\n"                                   # empty text
        'w1,"   \n  "\n'                          # white space only
        f',"{GOOD}"\n'                            # missing id
        f'g1,"{GOOD}"\n'                          # duplicate id
        f'm1,"{GOOD}",an extra field\n'           # malformed row
        "long1," + ("carcinoma of the lung " * 3000) + "\n"  # over-long: truncated, flagged
        f'g2,"{GOOD} Second line\nof the same report."\n'
    )  # fmt: skip
    raw = text.encode() + b"u1,Breast \xff\xfe carcinoma\n" + f'g3,"{GOOD}"\n'.encode()
    path.write_bytes(raw)


def test_every_bad_record_gets_its_own_error_row(registered: Registered, tmp_path: Path) -> None:
    _bad_csv(tmp_path / "in.csv")
    model = load_model(registered.champion, registered.tracking_uri)
    summary = predict(model, tmp_path / "in.csv", tmp_path / "out.parquet", chunk_size=3)
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out["record"].tolist() == list(range(1, 11))  # one row per record, in input order
    by = dict(
        zip(
            out["record"],
            zip(out["status"], out["error"].str.split(":").str[0], strict=True),
            strict=True,
        )
    )
    assert by[1] == ("ok", "")
    assert by[2] == ("error", "empty_text") and by[3] == ("error", "empty_text")
    assert by[4] == ("error", "missing_id")
    assert by[5] == ("error", "duplicate_id")
    assert by[6] == ("error", "malformed_row")
    assert by[7] == ("truncated", "truncated")
    assert by[8] == ("ok", "")
    assert by[9] == ("error", "undecodable")
    assert by[10] == ("ok", "")
    assert out.loc[out["status"] != "error", "site_label"].notna().all()
    assert out.loc[out["status"] == "error", "site_label"].isna().all()
    assert summary["errors_by_kind"] == {
        "duplicate_id": 1, "empty_text": 2, "malformed_row": 1, "missing_id": 1, "undecodable": 1,
    }  # fmt: skip
    assert summary["records"] == 10 and summary["scored"] == 4 and summary["truncated"] == 1
    assert set(summary["abstention_rate"]) >= {"site", "histology"}
    assert summary["precision"] == model.bundle.precision  # what scored, for the job's log
    assert summary["device"] == "cpu"


def test_refuses_to_clobber_and_formats(registered: Registered, tmp_path: Path) -> None:
    df = synthetic_reports(12, seed=9)[["report_id", "text"]]
    df.to_json(tmp_path / "in.jsonl", orient="records", lines=True)
    (tmp_path / "txt").mkdir()
    for rid, text in zip(df["report_id"], df["text"], strict=True):
        (tmp_path / "txt" / f"{rid}.txt").write_text(text)
    model = load_model(registered.champion, registered.tracking_uri)
    a = predict(model, tmp_path / "in.jsonl", tmp_path / "a.csv")
    b = predict(model, tmp_path / "txt", tmp_path / "b.csv")
    assert a["scored"] == b["scored"] == 12
    pa, pb = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    pd.testing.assert_series_equal(pa["site_label"], pb["site_label"])
    with pytest.raises(InputError, match="output exists"):
        predict(model, tmp_path / "in.jsonl", tmp_path / "a.csv")


def test_sigkill_then_resume_equals_an_uninterrupted_run(
    registered: Registered, tmp_path: Path
) -> None:
    synthetic_reports(1500, seed=5)[["report_id", "text"]].to_csv(tmp_path / "in.csv", index=False)
    env = {**os.environ, "MLFLOW_TRACKING_URI": registered.tracking_uri}
    cmd = [sys.executable, "-m", "kinpath.pipelines.cli", "predict", "--model", registered.champion,
           "--input", str(tmp_path / "in.csv"), "--chunk-size", "100"]  # fmt: skip

    full = subprocess.run([*cmd, "--output", str(tmp_path / "full.parquet")], env=env,
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert full.returncode == 0, full.stderr[-2000:]

    out = tmp_path / "killed.parquet"
    parts = tmp_path / "killed.parquet.parts"
    p = subprocess.Popen([*cmd, "--output", str(out)], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("part-*.parquet"))) < 4:
        time.sleep(0.02)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    written = len(list(parts.glob("part-*.parquet")))
    assert 4 <= written < 15 and not out.exists()  # killed halfway, not after the end

    r = subprocess.run(
        [*cmd, "--output", str(out), "--resume"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout)
    assert summary["chunks_resumed"] == written and summary["records"] == 1500
    a, b = pd.read_parquet(tmp_path / "full.parquet"), pd.read_parquet(out)
    assert b["report_id"].is_unique and len(b) == 1500
    pd.testing.assert_frame_equal(a, b)
    assert not parts.exists()


def test_logs_carry_no_report_text(registered: Registered, tmp_path: Path) -> None:
    df = synthetic_reports(30, seed=11)[["report_id", "text"]]
    df.loc[3, "text"] = ""
    df.to_csv(tmp_path / "in.csv", index=False)
    env = {**os.environ, "MLFLOW_TRACKING_URI": registered.tracking_uri}
    r = subprocess.run([sys.executable, "-m", "kinpath.pipelines.cli", "predict", "--model", registered.champion,
                        "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "o.csv")],
                       env=env, capture_output=True, text=True, check=False)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    logs = (r.stdout + r.stderr).lower()
    assert "empty_text" in logs  # the error is reported, by record and id
    # the job is an MLflow run of its own: its figures, no text
    run_id = json.loads(r.stdout[r.stdout.index("{") :])["mlflow_run"]
    run = mlflow.MlflowClient(registered.tracking_uri).get_run(run_id)
    assert run.data.metrics["records"] == 30 and run.data.metrics["errors"] == 1
    assert "abstention_rate.site" in run.data.metrics and "drift.oov_rate" in run.data.metrics
    assert run.data.tags["kinpath.model_version"].startswith("kinpath-test/")
    logs += json.dumps([run.data.params, run.data.tags]).lower()
    for text in df["text"]:
        t = " ".join(text.lower().split())
        for i in range(0, len(t) - 30, 30):
            assert t[i : i + 30] not in logs


def test_worker_processes_keep_the_order_and_the_answers(
    registered: Registered, tmp_path: Path
) -> None:
    _bad_csv(tmp_path / "in.csv")
    model = load_model(registered.champion, registered.tracking_uri, precision="fp32")
    assert model.bundle.nets[0].int8 is None  # the load-time choice reaches the pyfunc
    assert load_model(registered.champion, registered.tracking_uri).bundle.nets[0].int8 is not None
    outs = {}
    for workers in (0, 2):
        out = tmp_path / f"out{workers}.parquet"
        predict(model, tmp_path / "in.csv", out, chunk_size=2, workers=workers)
        outs[workers] = pd.read_parquet(out)
    pd.testing.assert_frame_equal(outs[0], outs[2])  # same rows, same order, same codes
    assert outs[2]["record"].tolist() == list(range(1, 11))
    with pytest.raises(InputError, match="--workers"):
        predict(model, tmp_path / "in.csv", tmp_path / "bad.parquet", workers=-1)
