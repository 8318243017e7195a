from pathlib import Path

import pytest

from kinpath.kg.graph import KnowledgeGraph, build_graph, load_graph
from kinpath.kg.link import ApproximateLinker, PhraseIndex, count_vocabulary, link_vocabulary
from kinpath.kg.normalize import words


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory, fixtures: Path) -> KnowledgeGraph:
    out = tmp_path_factory.mktemp("g") / "g"
    build_graph(out, umls_dirs=[fixtures / "umls_META"])
    return load_graph(out)


def test_phrases_merge_longest_first(graph: KnowledgeGraph) -> None:
    idx = PhraseIndex.from_graph(graph)
    toks = words("Invasive ductal carcinoma and squamous cell carcinoma of the upper lobe lung.")
    assert idx.merge(toks) == [
        "invasive_ductal_carcinoma", "and", "squamous_cell_carcinoma", "of", "the", "upper_lobe_lung",
    ]  # fmt: skip
    assert PhraseIndex([("a", "b"), ("a", "b", "c")]).merge(["a", "b", "c", "a", "b"]) == [
        "a_b_c",
        "a_b",
    ]


def test_exact_and_approximate_links(graph: KnowledgeGraph) -> None:
    vocab = count_vocabulary(
        [["squamous_cell_carcinoma", "lung", "idc", "carcinorna", "the", "<num>"], ["lung"]]
    )
    exact = link_vocabulary(vocab, graph)
    assert exact.by_token() == {
        "squamous_cell_carcinoma": {"C9000005"}, "lung": {"C9000002"}, "idc": {"C9000007"},
    }  # fmt: skip
    assert (exact.corpus_tokens, exact.linked_corpus_tokens) == (7, 4)
    approx = link_vocabulary(vocab, graph, ApproximateLinker(graph), threshold=0.5)
    row = approx.table.set_index("token").loc["carcinorna"]
    assert (row["cui"], row["method"], row["term"]) == ("C9000004", "approximate", "carcinoma")
    assert "<num>" not in set(approx.table["token"])
    strict = link_vocabulary(vocab, graph, ApproximateLinker(graph), threshold=0.99)
    assert "carcinorna" not in set(strict.table["token"])


@pytest.mark.shared
def test_tcga_train_links_multiword_terms(tmp_path: Path, shared: Path) -> None:
    from kinpath.kg.reports import read_texts

    build_graph(tmp_path / "g", umls_dirs=[shared / "kg" / "nci-icdo-meta"])
    g = load_graph(tmp_path / "g")
    idx = PhraseIndex.from_graph(g)
    texts = read_texts(shared / "tcga-reports" / "reports.csv", where={"split": "train"})
    links = link_vocabulary(count_vocabulary(idx.merge(words(t)) for t in texts), g)
    linked = set(links.table["token"])
    assert {"squamous_cell_carcinoma", "infiltrating_duct_carcinoma"} <= linked
    assert links.linked_corpus_tokens > 10_000
