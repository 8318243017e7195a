"""The whole pipeline on a tiny synthetic set, then a cached rerun."""

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from embeddings.word2vec import Word2VecConfig
from pipelines.run import DataConfig, EmbeddingConfig, FitConfig, run

STAGES = ["data", "graph", "embeddings", "fit-random", "fit-word2vec", "fit-kg-joint",
          "baseline", "registry", "predict", "report"]  # fmt: skip


def test_end_to_end_then_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    kw = dict(
        work=tmp_path / "work", tracking_uri=uri,
        data=DataConfig(synthetic_reports=80),
        embeddings=EmbeddingConfig(word2vec=Word2VecConfig(vector_size=16, epochs=2, min_count=1)),
        fit=FitConfig(fit_args=["--trainer.max_epochs=1", "--model.filters=8", "--data.max_length=200",
                                "--trainer.enable_progress_bar=false"]),
    )  # fmt: skip
    first = run(**kw)  # type: ignore[arg-type]
    for s in STAGES:
        state = json.loads((tmp_path / "work" / s / "stage.json").read_text())
        assert state["key"] and first["timings"][s] != "cached", s
    assert (tmp_path / "work/report/results.html").exists()
    assert (tmp_path / "work/report/f1_by_initialization.png").stat().st_size > 1000
    pred = pd.read_parquet(tmp_path / "work/predict/predictions.parquet")
    assert len(pred) == 12 and (pred["status"] == "ok").all()
    out = capsys.readouterr().out
    assert "| site |" in out and "mlflow ui --backend-store-uri" in out

    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model("models:/kinpath-demo@champion")
    scored = model.predict(
        pd.DataFrame({"report_id": ["x"], "text": ["Left breast: invasive ductal carcinoma."]})
    )
    assert scored["report_id"].tolist() == ["x"] and scored["site_label"].iloc[0]

    second = run(**kw)  # type: ignore[arg-type]
    assert set(second["timings"].values()) == {"cached"}
    # a change to the embeddings redoes them and what depends on them, nothing upstream
    kw["embeddings"] = EmbeddingConfig(
        word2vec=Word2VecConfig(vector_size=16, epochs=3, min_count=1)
    )
    third = run(**kw)  # type: ignore[arg-type]
    assert third["timings"]["data"] == third["timings"]["graph"] == "cached"
    assert (
        third["timings"]["embeddings"] != "cached" and third["timings"]["fit-kg-joint"] != "cached"
    )
