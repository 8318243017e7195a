"""Imports flow one way: kg → embeddings → phenotyping → pipelines."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAIN = ["kg", "embeddings", "phenotyping", "pipelines"]


@pytest.mark.parametrize("i", range(len(CHAIN)))
def test_no_import_runs_back_up_the_chain(i: int) -> None:
    later = set(CHAIN[i + 1 :])
    bad = []
    for py in (ROOT / CHAIN[i]).rglob("*.py"):
        for node in ast.walk(ast.parse(py.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            bad += [f"{py.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in later]
    assert not bad, bad


REGISTRY_CALLS = (
    "register_model",
    "registered_model",
    "create_model_version",
    "model_version",
    "models:/",
)


def test_only_pipelines_knows_the_registry() -> None:
    for pkg in CHAIN[:-1]:
        for py in (ROOT / pkg).rglob("*.py"):
            text = py.read_text()
            assert not [c for c in REGISTRY_CALLS if c in text], py
