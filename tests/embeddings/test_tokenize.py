from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from kinpath.embeddings import tokenize
from kinpath.embeddings.tokenize import ReportTokenizer, TokenizerConfig, forget_tokens

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


def test_remembered_reports_are_not_parsed_again_and_read_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # every fit of a `kinpath run` reads the same tables: the second read takes the tokens
    # from memory, and only a tokenizer that reads them the same way shares them
    from gensim.models.phrases import Phrases

    forget_tokens()
    texts = [TEXT, "Ductal carcinoma in one lymph node.", TEXT, "Left lung: adenocarcinoma."]
    fresh = list(ReportTokenizer([("invasive", "ductal", "carcinoma")]).pipe(texts))
    tok = ReportTokenizer([("invasive", "ductal", "carcinoma")])
    parsed: list[int] = []
    real = ReportTokenizer._docs

    def counted(self: ReportTokenizer, batch: Iterable[str], size: int) -> Iterator[object]:
        batch = list(batch)
        parsed.append(len(batch))
        return real(self, batch, size)

    monkeypatch.setattr(ReportTokenizer, "_docs", counted)
    assert list(tok.pipe(texts, remember=True)) == fresh
    assert parsed == [3]  # the repeated report parsed once
    again = list(tok.pipe(texts, batch_size=1, remember=True))
    assert again == fresh and parsed == [3, 0]
    again[0][0].append("x")  # what a caller does with its lists leaves the memory as it was
    assert list(tok.pipe(texts, remember=True)) == fresh
    # other phrases, other settings or other collocations: parsed anew, never shared
    others = [
        ReportTokenizer([]),
        ReportTokenizer([("invasive", "ductal", "carcinoma")], TokenizerConfig(expand_abbreviations=False)),
        tok.with_collocations(Phrases([["lymph", "node"]] * 20, min_count=1, threshold=0.1).freeze()),
    ]  # fmt: skip
    assert len({tok.fingerprint, *(o.fingerprint for o in others)}) == 4
    for other in others:
        parsed.clear()
        assert list(other.pipe(texts, remember=True)) == list(other.pipe(texts))
        assert parsed == [3, 4]
    # and a report's spans still come from parsing it
    assert [s for s, _ in tok.pipe_spans(texts)] == fresh
    # past the bound, the oldest go first
    monkeypatch.setattr(tokenize, "MEMO_TOKENS", 30)
    forget_tokens()
    list(tok.pipe(texts, remember=True))
    assert 0 < tokenize._memo_tokens <= 30 and len(tokenize._memo) < 3
    forget_tokens()
