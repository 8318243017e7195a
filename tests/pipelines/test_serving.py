"""The registered model behind `mlflow models serve`, and in Spark through spark_udf."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from kinpath.pipelines.synthetic import synthetic_reports
from tests.pipelines.conftest import Registered


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_mlflow_models_serve_answers_on_loopback(registered: Registered, tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": registered.tracking_uri}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", registered.champion,
         "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=registered.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
                time.sleep(0.5)
        df = synthetic_reports(3, seed=21)[["report_id", "text"]]
        body = json.dumps({"dataframe_split": df.to_dict(orient="split", index=False)}).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            out = pd.DataFrame(json.loads(r.read())["predictions"])
        assert out["report_id"].tolist() == df["report_id"].tolist()
        assert out["site_prob"].between(0, 1).all()

        def post(payload: dict) -> tuple[int, str]:
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/invocations",
                data=json.dumps(payload).encode(),
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode()

        # a bad request is answered by column and row, never with the request's text
        planted = "Patient Zebulon Quixotehart"
        for bad in ({"dataframe_split": {"columns": ["report_id", "txt"], "data": [["r1", planted]]}},
                    {"instances": planted},
                    {"dataframe_split": {"columns": ["id", "text"], "data": [[planted, planted]]}}):  # fmt: skip
            status, body = post(bad)
            assert status == 400, body[:500]
            assert "Zebulon" not in body and "Quixotehart" not in body
        # empty or null text is what the batch job calls it, not a row of abstained codes
        status, body = post({"dataframe_split": {"columns": ["report_id", "text"],
                                                 "data": [["r1", None], ["r2", "  "], ["r3", df["text"][0]]]}})  # fmt: skip
        assert status == 200, body[:500]
        rows = pd.DataFrame(json.loads(body)["predictions"])
        assert rows["status"].tolist() == ["error", "error", "ok"]
        assert rows["error"].str.startswith("empty_text").tolist() == [True, True, False]
        assert rows.loc[:1, "site_label"].isna().all() and rows.loc[2, "site_label"]
    finally:
        os.killpg(server.pid, 9)
        server.wait()


@pytest.mark.slow
def test_spark_udf_scores_a_dataframe(registered: Registered) -> None:
    pytest.importorskip("pyspark", reason="pyspark is the optional [spark] extra")
    import mlflow
    from pyspark.sql import SparkSession

    mlflow.set_tracking_uri(registered.tracking_uri)
    spark = SparkSession.builder.master("local[1]").appName("kinpath-test").getOrCreate()
    try:
        df = synthetic_reports(6, seed=22)[["report_id", "text"]]
        sdf = spark.createDataFrame(df)
        # no result_type: the struct of every output column, from the model's signature
        udf = mlflow.pyfunc.spark_udf(spark, registered.champion, env_manager="local")
        scored = sdf.withColumn("p", udf("report_id", "text")).select("report_id", "p.*").toPandas()
        assert len(scored) == 6 and scored["site_label"].notna().all()
        # Spark scores what the model scores in-process, report for report
        local = mlflow.pyfunc.load_model(registered.champion).predict(sdf.toPandas())
        pd.testing.assert_series_equal(
            scored.set_index("report_id")["site_label"],
            local.set_index("report_id")["site_label"],
            check_names=False,
        )
    finally:
        spark.stop()
