"""Shared test fixtures: the project's own synthetic files, and ../shared/data when present."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _mlflow_store_put_back() -> Iterator[None]:
    """Each test leaves MLflow's global tracking URI (and its environment variable) as it
    found them, so no test passes or fails by which test ran before it on its worker."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow = sys.modules.get("mlflow")
    before = mlflow.get_tracking_uri() if mlflow and mlflow.is_tracking_uri_set() else None
    yield
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:
        mlflow.set_tracking_uri(before)
    if env is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = env


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared real data; tests using it skip with the reason when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED} (fresh clone without ../shared)")
    return SHARED


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL 16 server (pgserver: a pip wheel, a Unix socket), started for the
    session and stopped after; its admin URI. Skipped, with the reason, if it cannot start."""
    pgserver = pytest.importorskip("pgserver", reason="pgserver is in the [dev] extra")
    pytest.importorskip("psycopg", reason="psycopg is in the [dev] extra")
    folder = tmp_path_factory.mktemp("pg")
    try:
        server = pgserver.get_server(folder, cleanup_mode="stop")
    except Exception as e:
        pytest.skip(f"PostgreSQL (pgserver) could not start here: {type(e).__name__}: {e}")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
