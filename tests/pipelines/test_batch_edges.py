"""The batch job's edges: nothing stale, nothing clobbered, one writer, safe CSV, clear errors."""

from __future__ import annotations

import fcntl
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
        r = subprocess.run([sys.executable, "-m", "kinpath.pipelines.cli", "predict", "--model", registered.champion,
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


def _kinpath(args: list[str], env: dict[str, str], cwd: Path | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess:  # fmt: skip
    return subprocess.run([sys.executable, "-m", "kinpath.pipelines.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, check=False, timeout=timeout)  # fmt: skip


def test_a_folder_with_links_folders_and_fifos_gives_error_rows_and_never_hangs(
    registered: Registered, tmp_path: Path
) -> None:
    night = tmp_path / "night"
    night.mkdir()
    synthetic = synthetic_reports(2, seed=8)
    (night / "a.txt").write_text(synthetic["text"][0])
    (night / "b.txt").write_text(synthetic["text"][1])
    (night / "dir.txt").mkdir()  # a folder named like a report
    os.symlink(tmp_path / "nowhere.txt", night / "dangling.txt")
    os.mkfifo(tmp_path / "pipe")  # nothing ever writes to it: reading it would wait forever
    os.symlink(tmp_path / "pipe", night / "outside.txt")  # a link out of the folder, to a FIFO
    os.mkfifo(night / "fifo.txt")  # a FIFO inside the folder
    env = {**os.environ, "MLFLOW_TRACKING_URI": registered.tracking_uri}
    out = tmp_path / "out.parquet"
    r = _kinpath(["predict", "--model", registered.champion, "--input", str(night),
                  "--output", str(out)], env, timeout=240)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    df = pd.read_parquet(out).set_index("report_id")
    assert sorted(df.index) == ["a", "b", "dangling", "dir", "fifo", "outside"]
    assert (df.loc[["a", "b"], "status"] == "ok").all()
    for name in ("dangling", "dir", "fifo", "outside"):
        assert df.loc[name, "status"] == "error" and df.loc[name, "error"].startswith("unreadable")
    # a resume reads the folder exactly as the checksum does: same input, only a summary
    again = _kinpath(["predict", "--model", registered.champion, "--input", str(night),
                      "--output", str(out), "--resume"], env, timeout=240)  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    assert '"records_scored_now": 0' in again.stdout


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_job_killed_alone_leaves_no_worker_and_resumes(
    registered: Registered, tmp_path: Path
) -> None:
    """The scheduler kills the job's main process, not its group: its tokenizer worker must
    die with it and never keep the output's lock, so `--resume` finishes the job."""
    src = _reports(tmp_path / "in.csv", 1500, 9)
    env = {**os.environ, "MLFLOW_TRACKING_URI": registered.tracking_uri}
    base = ["predict", "--model", registered.champion, "--input", str(src), "--chunk-size", "100",
            "--workers", "1"]  # fmt: skip
    whole = _kinpath([*base, "--output", str(tmp_path / "whole.parquet")], env)
    assert whole.returncode == 0, whole.stderr[-2000:]

    out = tmp_path / "out.parquet"
    parts = tmp_path / "out.parquet.parts"
    p = subprocess.Popen([sys.executable, "-m", "kinpath.pipelines.cli", *base, "--output", str(out)],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)  # fmt: skip
    try:
        deadline = time.time() + 240
        while time.time() < deadline and len(list(parts.glob("part-*.parquet"))) < 2:
            assert p.poll() is None, "the job ended before it could be killed"
            time.sleep(0.05)
        os.kill(p.pid, signal.SIGKILL)  # the main process only
        p.wait()
        deadline = time.time() + 20
        while time.time() < deadline and _group_alive(p.pid):
            time.sleep(0.1)
        assert not _group_alive(p.pid), "a process of the killed job is still alive"
    finally:
        if _group_alive(p.pid):
            os.killpg(p.pid, signal.SIGKILL)
    assert not out.exists() and 2 <= len(list(parts.glob("part-*.parquet"))) < 15
    r = _kinpath([*base, "--output", str(out), "--resume"], env)
    assert r.returncode == 0, r.stderr[-2000:]
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(tmp_path / "whole.parquet"))


def test_a_model_that_is_not_there_is_a_clear_error(
    registered: Registered, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    # the command's own entry point in this process: the exit status and the message are what
    # is checked, and a process each cost the suite half a minute
    from kinpath.pipelines.cli import main

    src = _reports(tmp_path / "in.csv", 2, 10)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered.tracking_uri)
    for uri in ("runs:/deadbeef/model", str(tmp_path / "no-such-model"), "models:/nope@champion"):
        code = main(
            [
                "predict",
                "--model",
                uri,
                "--input",
                str(src),
                "--output",
                str(tmp_path / "o.parquet"),
            ]
        )
        err = capsys.readouterr().err
        assert code == 2, err[-2000:]
        assert "Traceback" not in err and uri in err and registered.tracking_uri in err
    # outside any project folder, with no MLFLOW_TRACKING_URI: the store it looked for is named,
    # and none is created
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(elsewhere)
    for args in (["predict", "--model", registered.champion, "--input", str(src), "--output",
                  str(tmp_path / "o.parquet")], ["registry", "list"]):  # fmt: skip
        code = main(args)
        err = capsys.readouterr().err
        assert code == 2, err[-2000:]
        assert f"no MLflow store at {elsewhere / 'mlruns.db'}" in err
        assert not list(elsewhere.iterdir())


@pytest.mark.parametrize("precision", ["auto", "fp32", "int8", "bf16"])
def test_a_reports_scores_do_not_depend_on_its_batch(
    registered: Registered, tmp_path: Path, precision: str
) -> None:
    model = load_model(registered.champion, registered.tracking_uri, precision)
    src = _reports(tmp_path / "in.csv", 120, 11)
    runs = [
        pd.read_parquet(
            predict(model, src, tmp_path / f"o{c}-{b}.parquet", chunk_size=c, batch_size=b)[
                "output"
            ]
        )
        for c, b in ((50, 32), (100, 32), (120, 7))
    ]
    probs = [c for c in runs[0].columns if c.endswith("_prob")]
    for other in runs[1:]:
        diff = (runs[0][probs] - other[probs]).abs().to_numpy().max()
        assert diff <= 1e-6, f"{precision}: a report's score moved by {diff} with its batch"
        assert (runs[0].filter(like="_label") == other.filter(like="_label")).all().all()
    for df in runs:
        assert ((df[probs] >= 0) & (df[probs] <= 1)).all().all()


def test_the_device_is_checked_before_the_model_loads(registered: Registered) -> None:
    import torch

    # auto is the CPU where torch sees no GPU, and the summary of a job says which scored
    model = load_model(registered.champion, registered.tracking_uri, device="auto")
    assert model.bundle.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(
        InputError, match=r"--device: device must be auto, cpu, cuda or cuda:N, not 'tpu'"
    ):
        load_model(registered.champion, registered.tracking_uri, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="--device: device cuda: torch sees no CUDA GPU"):
            load_model(registered.champion, registered.tracking_uri, device="cuda")


def test_int8_on_a_gpu_is_a_clear_error(
    registered: Registered, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    # int8 convolutions are a CPU path; the check comes before any network is moved
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(
        InputError, match="--precision int8 --device cuda: int8 precision runs on the CPU only"
    ):
        load_model(registered.champion, registered.tracking_uri, precision="int8", device="cuda")
