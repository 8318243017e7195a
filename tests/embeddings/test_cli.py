import json
from pathlib import Path

import pytest
from gensim.models import KeyedVectors

from kinpath.pipelines.cli import main
from tests.embeddings.conftest import synthetic_reports


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kinpath.kg.graph import build_graph

    fixtures = Path(__file__).parents[1] / "fixtures"
    out = tmp_path_factory.mktemp("g") / "g"
    build_graph(out, umls_dirs=[fixtures / "umls_META"])
    return out


def _reports(tmp_path: Path) -> Path:
    df = synthetic_reports(60)
    df.loc[::3, "text"] += (
        " Squamous cell carcinoma of the lung. Invasive ductal carcinoma of breast. Adenocarcinoma."
    )
    p = tmp_path / "reports.csv"
    df.to_csv(p, index=False)
    return p


def test_train_writes_word2vec_format_vectors(tmp_path: Path, graph: Path) -> None:
    cfg = tmp_path / "emb.yaml"
    cfg.write_text(
        f"corpus: {_reports(tmp_path)}\nout: {tmp_path / 'emb'}\ngraph: {graph}\nmethod: kg-joint\n"
        "word2vec:\n  vector_size: 16\n  epochs: 2\n  min_count: 1\n"
    )
    assert main(["embed", "train", "-c", str(cfg)]) == 0
    kv = KeyedVectors.load_word2vec_format(str(tmp_path / "emb" / "vectors.txt"))
    assert kv.vector_size == 16 and "squamous_cell_carcinoma" in kv
    m = json.loads((tmp_path / "emb" / "manifest.json").read_text())
    assert m["method"] == "kg-joint" and m["seed"] == 42 and m["vocabulary_size"] == len(kv)
    assert len(m["corpus"]["checksum"]) == 64 and m["graph_checksum"]
    # no report text in the manifest: counts and checksums only
    assert "Squamous cell carcinoma of the lung" not in json.dumps(m)


def test_compare_prints_one_row_per_method(
    tmp_path: Path, graph: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["embed", "compare", "--corpus", str(_reports(tmp_path)), "--graph", str(graph), "--out",
            str(tmp_path / "cmp"), "--word2vec.vector_size", "16", "--word2vec.epochs", "2",
            "--word2vec.min_count", "1"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:2] == ["method", "heldout_recall@10"]
    assert [ln.split()[0] for ln in out[1:4]] == ["word2vec", "retrofit", "kg-joint"]
    assert (tmp_path / "cmp" / "neighbourhoods.png").stat().st_size > 1000
    assert (tmp_path / "cmp" / "neighbours.md").exists()


def test_unknown_method_is_a_clear_error(
    tmp_path: Path, graph: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # one method: a choice, refused by the parser with the allowed ones
    with pytest.raises(SystemExit) as exit_:
        main(["embed", "train", "--corpus", str(_reports(tmp_path)), "--out", str(tmp_path / "e"),
              "--method", "glove"])  # fmt: skip
    assert exit_.value.code == 2
    assert "'word2vec', 'retrofit', 'kg-joint'" in capsys.readouterr().err
    # a list of methods: checked before anything is read
    rc = main(["embed", "compare", "--corpus", str(_reports(tmp_path)), "--graph", str(graph),
               "--out", str(tmp_path / "c"), "--methods", "[word2vec, glove]"])  # fmt: skip
    assert rc == 2 and "unknown method" in capsys.readouterr().err
