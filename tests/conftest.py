"""Shared test fixtures: the project's own synthetic files, and ../shared/data when present."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared real data; tests using it skip with the reason when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED} (fresh clone without ../shared)")
    return SHARED
