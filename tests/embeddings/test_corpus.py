from pathlib import Path

import pandas as pd

from kinpath.embeddings.corpus import Corpus, build_corpus
from kinpath.embeddings.tokenize import ReportTokenizer


def test_slices_cover_the_corpus_once(corpus: Corpus) -> None:
    parts = corpus.slices(7)
    assert 6 <= len(parts) <= 8
    assert sum(p.words for p in parts) == corpus.tokens
    assert [s for p in parts for s in p] == list(corpus)
    assert list(parts[0]) == list(parts[0])  # re-iterable, as gensim needs


def test_formats_and_split(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "report_id": ["a", "b"],
            "text": ["Lung carcinoma.", "Breast."],
            "split": ["train", "test"],
        }
    )
    df.to_json(tmp_path / "r.jsonl", orient="records", lines=True)
    c, _ = build_corpus(
        tmp_path / "r.jsonl", ReportTokenizer(), tmp_path / "o", where={"split": "train"}
    )
    assert list(c) == [["lung", "carcinoma"]] and c.reports == 1
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "r1.txt").write_text("Kidney. Renal cell carcinoma.")
    c, _ = build_corpus(tmp_path / "txt", ReportTokenizer(), tmp_path / "o2")
    assert list(c) == [["kidney"], ["renal", "cell", "carcinoma"]]
    assert len(c.checksum) == 64


def test_collocations_join_frequent_pairs(tmp_path: Path) -> None:
    text = " ".join(["Metastatic carcinoma in lymph node." for _ in range(30)])
    pd.DataFrame({"report_id": ["a"], "text": [text]}).to_csv(tmp_path / "r.csv", index=False)
    c, tok = build_corpus(tmp_path / "r.csv", ReportTokenizer(), tmp_path / "o", collocations=True,
                          collocation_min_count=2, collocation_threshold=0.1)  # fmt: skip
    assert "lymph_node" in c.vocabulary()
    assert "lymph_node" in tok.tokens("Two lymph node biopsies.")
