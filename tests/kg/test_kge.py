import os
from pathlib import Path

import pandas as pd
import pytest

from kinpath.kg.graph import KnowledgeGraph
from kinpath.kg.kge import graph_triples, train_kge


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
    g = _ring_graph(40)
    triples = graph_triples(g)
    assert triples.shape == (120, 3) and set(triples[:, 1]) == {"next", "skip", "PAR"}
    untrained = train_kge(g, epochs=0, embedding_dim=32, batch_size=16)
    res = train_kge(g, epochs=30, embedding_dim=32, batch_size=16)
    # training must beat the same model with no training on the held-out facts
    assert res.mrr > 1.2 * untrained.mrr and res.hits_at_10 > untrained.hits_at_10
    assert sum(res.triples.values()) == 120
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
