from pathlib import Path

import pytest

from kinpath.kg.graph import KnowledgeGraph, build_graph, load_graph
from kinpath.kg.pairs import PairConfig, connected_pairs


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory, fixtures: Path) -> KnowledgeGraph:
    out = tmp_path_factory.mktemp("g") / "g"
    build_graph(out, umls_dirs=[fixtures / "umls_META"])
    return load_graph(out)


LINKS = {
    "idc": frozenset({"C9000007"}),
    "invasive_ductal_carcinoma": frozenset({"C9000007"}),
    "adenocarcinoma": frozenset({"C9000006"}),
    "carcinoma": frozenset({"C9000004"}),
    "breast": frozenset({"C9000001"}),
    "lung": frozenset({"C9000002"}),
}


def _pairs(graph: KnowledgeGraph, **cfg: object) -> dict[tuple[str, str], tuple[float, str, int]]:
    df = connected_pairs(LINKS, graph, PairConfig(**cfg))  # type: ignore[arg-type]
    assert (df["a"] < df["b"]).all()
    return {
        (a, b): (w, r, h)
        for a, b, w, r, h in df[["a", "b", "weight", "rel", "hops"]].itertuples(index=False)
    }


def test_synonyms_hierarchy_and_related(graph: KnowledgeGraph) -> None:
    p = _pairs(graph)
    assert p[("idc", "invasive_ductal_carcinoma")] == (1.0, "SY", 0)
    assert p[("adenocarcinoma", "idc")] == (0.5, "PAR", 1)
    assert p[("breast", "idc")] == (0.25, "RO", 1)
    assert ("carcinoma", "idc") not in p  # two hops away
    assert ("breast", "lung") not in p


def test_hops_and_weights_configurable(graph: KnowledgeGraph) -> None:
    p = _pairs(graph, max_hops=2)
    assert p[("carcinoma", "idc")] == (0.25, "PAR", 2)
    p = _pairs(graph, relation_weights={"PAR": 1.0, "CHD": 1.0})
    assert p[("adenocarcinoma", "idc")] == (1.0, "PAR", 1)
    assert ("breast", "idc") not in p  # RO not weighted: not walked
