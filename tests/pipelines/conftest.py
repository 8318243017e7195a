"""A small registered model, trained once per session on the fixture reports."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Registered:
    tracking_uri: str
    name: str
    version: str
    workdir: Path

    @property
    def champion(self) -> str:
        return f"models:/{self.name}@champion"


@contextmanager
def _inside(folder: Path, tracking_uri: str) -> Iterator[None]:
    """Work in ``folder`` with ``tracking_uri`` for the length of the block, then undo both."""
    old_env, old_cwd = os.environ.get("MLFLOW_TRACKING_URI"), Path.cwd()
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        if old_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old_env


@pytest.fixture(scope="session")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Registered:
    """Trained and registered once; the folder and environment change only while it is made."""
    from kinpath.phenotyping.cli import cli
    from kinpath.pipelines import registry

    work = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{work / 'mlruns.db'}"
    with _inside(work, uri):
        c = cli(["fit", "-c", str(ROOT / "configs/mtcnn.yaml"), "--data.data",
                 str(ROOT / "tests/fixtures/reports.csv"), "--trainer.max_epochs=3",
                 "--model.filters=32", "--data.max_length=300"])  # fmt: skip
        run_id = c.trainer.logger.run_id  # type: ignore[union-attr]
        r = registry.register(run_id, "kinpath-test", uri)
        registry.promote("kinpath-test", r.version, "champion", uri)
    return Registered(uri, "kinpath-test", r.version, work)
