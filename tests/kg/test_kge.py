import os
from pathlib import Path

import pandas as pd
import pytest

from kg.graph import KnowledgeGraph
from kg.kge import graph_triples, train_kge


def _ring_graph(n: int = 30) -> KnowledgeGraph:
    """A ring with two relation types: small, but every entity recurs enough to split."""
    rows = []
    for i in range(n):
        rows.append((f"C{i}", "RO", "next", f"C{(i + 1) % n}", "T"))
        rows.append((f"C{i}", "RO", "skip", f"C{(i + 2) % n}", "T"))
        rows.append((f"C{i}", "PAR", "", f"C{(i + 3) % n}", "T"))  # no RELA: REL is the label
    rel = pd.DataFrame(rows, columns=["head", "rel", "rela", "tail", "source"])
    return KnowledgeGraph(pd.DataFrame(), pd.DataFrame(), rel, {"checksum": "x"})


def test_transe_trains_and_reports_filtered_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYSTOW_HOME", raising=False)
    monkeypatch.delenv("PYKEEN_HOME", raising=False)
    g = _ring_graph()
    triples = graph_triples(g)
    assert triples.shape == (90, 3) and set(triples[:, 1]) == {"next", "skip", "PAR"}
    res = train_kge(g, epochs=5, embedding_dim=8, batch_size=16)
    assert 0.0 < res.mrr <= 1.0 and 0.0 <= res.hits_at_10 <= 1.0
    assert sum(res.triples.values()) == 90
    # pykeen's cache goes under the working directory, not the home folder
    assert os.environ["PYSTOW_HOME"] == str(tmp_path / ".cache" / "pykeen")


def test_each_fact_once() -> None:
    rows = [
        ("A", "PAR", "inverse_isa", "B", "S"),
        ("B", "CHD", "isa", "A", "S"),
        ("A", "RO", "related_to", "C", "S"),
        ("C", "RO", "related_to", "A", "S"),
    ]
    rel = pd.DataFrame(rows, columns=["head", "rel", "rela", "tail", "source"])
    g = KnowledgeGraph(pd.DataFrame(), pd.DataFrame(), rel, {"checksum": "x"})
    assert graph_triples(g).tolist() == [["A", "inverse_isa", "B"], ["A", "related_to", "C"]]
