from kinpath.kg.normalize import DATE, NUM, normalize_token, term_key, term_words, words


def test_tokens_fold_case_unicode_and_punctuation() -> None:
    assert normalize_token("Non-Small") == ["non", "small"]
    assert normalize_token("ＣＡＲＣＩＮＯＭＡ") == ["carcinoma"]  # full-width (NFKC)
    assert normalize_token("(IDC),") == ["idc"]
    assert normalize_token("...") == []


def test_numbers_and_dates_fold_but_codes_stay() -> None:
    assert normalize_token("2.5") == [NUM]
    assert normalize_token("15") == [NUM]
    assert normalize_token("2") == ["2"]  # grade 2: single digits carry meaning
    assert normalize_token("12%") == [NUM]
    assert normalize_token("3/4") == [NUM]
    assert normalize_token("03/12/2014") == [DATE]
    assert normalize_token("2014-03-12") == [DATE]
    assert normalize_token("8500/3") == ["8500/3"]
    assert normalize_token("C50.9") == ["c50.9"]


def test_term_and_report_words_meet() -> None:
    assert term_key("Squamous cell carcinoma, NOS") == "squamous_cell_carcinoma"
    assert term_key("Upper lobe, lung") == "upper_lobe_lung"
    assert words("squamous  cell\ncarcinoma.") == list(term_words("Squamous cell carcinoma"))
    assert term_key("NOS") == "nos"  # a lone qualifier is kept, not emptied
