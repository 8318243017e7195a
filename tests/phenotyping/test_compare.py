"""`kinpath phenotype compare`: three initializations and the baseline in one table, all in MLflow."""

from pathlib import Path

import mlflow
import pytest

from kinpath.embeddings.train import TrainRequest, train_methods
from kinpath.embeddings.word2vec import Word2VecConfig
from kinpath.kg.graph import build_graph
from kinpath.phenotyping.compare import compare

ROOT = Path(__file__).resolve().parents[2]


def test_one_table_and_every_run_in_mlflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    reports = ROOT / "tests/fixtures/reports.csv"
    build_graph(tmp_path / "g", umls_dirs=[ROOT / "tests/fixtures/umls_META"])
    request = TrainRequest(reports, tmp_path / "emb", tmp_path / "g",
                           word2vec=Word2VecConfig(vector_size=16, epochs=2, min_count=1))  # fmt: skip
    emb = train_methods(["word2vec", "kg-joint"], request)
    compare(
        fit_config=ROOT / "configs/mtcnn.yaml",
        embeddings={k: str(v) for k, v in emb.items()},
        out=tmp_path / "cmp",
        overrides={"data.data": str(reports), "trainer.max_epochs": 1, "model.filters": 8,
                   "data.max_length": 200, "trainer.enable_progress_bar": False},
    )  # fmt: skip
    table = capsys.readouterr().out
    header = next(line for line in table.splitlines() if line.startswith("| method"))
    assert "| histology |" in header
    for method in ("mtcnn-random", "mtcnn-word2vec", "mtcnn-kg-joint", "tfidf-logreg"):
        assert f"| {method} |" in table  # a row per method
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("kinpath-phenotyping")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"mtcnn-random", "mtcnn-word2vec", "mtcnn-kg-joint", "tfidf-logreg"}
    assert all("test/site/macro_f1" in r.data.metrics for r in runs.values())
    assert (tmp_path / "cmp" / "results.md").read_text() in table
