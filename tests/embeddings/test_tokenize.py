from pathlib import Path

from kinpath.embeddings.tokenize import ReportTokenizer, TokenizerConfig

TEXT = (
    "FINAL DIAGNOSIS: Invasive ductal carcinoma (IDC) of the LEFT breast, grade 2, 2.5 cm. "
    "IDC is present at the margin. Received 03/12/2014. Squamous cell carcinoma, lung."
)


def test_sentences_normalized_and_phrases_merged() -> None:
    tok = ReportTokenizer([("invasive", "ductal", "carcinoma"), ("squamous", "cell", "carcinoma")])
    sents = tok.sentences(TEXT)
    assert sents[0] == [
        "final", "diagnosis", "invasive_ductal_carcinoma", "of", "the", "left", "breast",
        "grade", "2", "<num>", "cm",
    ]  # fmt: skip
    # the short form defined in the report becomes its long form elsewhere
    assert sents[1][0] == "invasive_ductal_carcinoma"
    assert ["received", "<date>"] in sents
    assert sents[-1] == ["squamous_cell_carcinoma", "lung"]


def test_abbreviations_can_be_kept() -> None:
    tok = ReportTokenizer([], TokenizerConfig(expand_abbreviations=False))
    assert "idc" in tok.tokens(TEXT)


def test_save_load_roundtrip(tmp_path: Path) -> None:
    from gensim.models.phrases import Phrases

    tok = ReportTokenizer([("ductal", "carcinoma")])
    col = Phrases([["lymph", "node"]] * 20, min_count=1, threshold=0.1).freeze()
    tok = tok.with_collocations(col)
    tok.save(tmp_path / "tok")
    again = ReportTokenizer.load(tmp_path / "tok")
    text = "Ductal carcinoma in one lymph node."
    assert again.tokens(text) == tok.tokens(text) == ["ductal_carcinoma", "in", "one", "lymph_node"]
