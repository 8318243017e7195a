"""Imports flow one way: kg → embeddings → phenotyping → pipelines, all under ``kinpath``."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAIN = ["kg", "embeddings", "phenotyping", "pipelines"]


CODE_IN_STRINGS = re.compile(r"(?:^|\n|;)\s*(?:from|import) ((?:\w+)(?:\.\w+)*)")


def _imports(py: Path) -> list[str]:
    """Every module a file imports, and every module that code it runs in a string (a
    subprocess's ``-c``) imports."""
    names: list[str] = []
    for node in ast.walk(ast.parse(py.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names += CODE_IN_STRINGS.findall(node.value)
    return names


@pytest.mark.parametrize("i", range(len(CHAIN)))
def test_no_import_runs_back_up_the_chain(i: int) -> None:
    later = {f"kinpath.{p}" for p in CHAIN[i + 1 :]}
    bad = [
        f"{py.relative_to(ROOT)}: {n}"
        for py in (ROOT / CHAIN[i]).rglob("*.py")
        for n in _imports(py)
        if ".".join(n.split(".")[:2]) in later
    ]
    assert not bad, bad


def test_the_project_imports_its_packages_by_their_kinpath_names_only() -> None:
    """A bare ``import kg`` would load a second copy of a module (or another project's ``kg``
    from the package index, where kinpath is installed beside it)."""
    folders = [*CHAIN, "tests", "bench", "docs", "kinpath"]
    bad = [
        f"{py.relative_to(ROOT)}: {n}"
        for folder in folders
        for py in (ROOT / folder).rglob("*.py")
        if not py.is_relative_to(ROOT / "kinpath") or py.parent == ROOT / "kinpath"
        for n in _imports(py)
        if n.split(".")[0] in CHAIN
    ]
    assert not bad, bad


def test_the_namespace_links_are_the_folders() -> None:
    for p in CHAIN:
        link = ROOT / "kinpath" / p
        assert link.is_symlink() and link.resolve() == (ROOT / p).resolve(), link


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
