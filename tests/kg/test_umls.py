from pathlib import Path

import pytest

from kinpath.common import InputError
from kinpath.kg.umls import (
    MRCONSO_FIELDS,
    MRREL_FIELDS,
    RrfFile,
    RrfFilters,
    read_mrconso,
    read_mrrel,
)


def _rows(path: Path, **filters: object) -> list[dict[str, str]]:
    out = []
    for batch in read_mrconso(RrfFile(path, MRCONSO_FIELDS), RrfFilters(**filters), batch_size=3):  # type: ignore[arg-type]
        out.extend(
            dict(zip(batch, vals, strict=True)) for vals in zip(*batch.values(), strict=True)
        )
    return out


def test_trailing_pipe_is_optional(fixtures: Path) -> None:
    a = _rows(fixtures / "umls_META" / "MRCONSO.RRF")
    b = _rows(fixtures / "umls_no_trailing" / "MRCONSO.RRF")
    assert a == b and len(a) == 16  # 18 rows less one French, one suppressed


def test_filters(fixtures: Path) -> None:
    conso = fixtures / "umls_META" / "MRCONSO.RRF"
    assert len(_rows(conso, languages=None, keep_suppressed=True)) == 18
    assert {r["SAB"] for r in _rows(conso, sources=("NCI",))} == {"NCI"}
    assert {r["TTY"] for r in _rows(conso, term_types=("SY",))} == {"SY"}
    rel = RrfFile(fixtures / "umls_META" / "MRREL.RRF", MRREL_FIELDS)
    kept = [r for b in read_mrrel(rel, RrfFilters(relations=("RO",))) for r in b["REL"]]
    assert kept == ["RO"] * 4


def test_wrong_field_count_names_file_and_line(tmp_path: Path, fixtures: Path) -> None:
    lines = (fixtures / "umls_META" / "MRCONSO.RRF").read_text().splitlines()
    lines.insert(4, "C9|ENG|P|too|few|fields|")
    bad = tmp_path / "MRCONSO.RRF"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"MRCONSO\.RRF:5: expected 18.*found 6$"):
        _rows(bad)
    # one field missing: the message counts the fields that are there
    short = lines[5].split("|")
    del short[3]
    lines[4] = "|".join(short)
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"MRCONSO\.RRF:5: expected 18 .*found 17$"):
        _rows(bad)
    rrf = RrfFile(bad, MRCONSO_FIELDS, on_error="skip")
    n = sum(len(b["CUI"]) for b in read_mrconso(rrf, RrfFilters()))
    assert n == 16 and [ln for ln, _ in rrf.skipped] == [5]


def test_undecodable_bytes_name_the_line(tmp_path: Path, fixtures: Path) -> None:
    raw = (fixtures / "umls_META" / "MRCONSO.RRF").read_bytes().split(b"\n")
    raw[2] = raw[2].replace(b"Lung", b"Lu\xffng")
    bad = tmp_path / "MRCONSO.RRF"
    bad.write_bytes(b"\n".join(raw))
    with pytest.raises(InputError, match=r":3: bytes are not UTF-8") as e:
        _rows(bad)
    assert "Lu" not in str(e.value)  # the message never quotes the row


@pytest.mark.shared
def test_real_umls_sample_loads_every_string(shared: Path) -> None:
    rows = _rows(
        shared / "kg" / "umls-samples" / "MRCONSO.RRF", keep_suppressed=True, languages=None
    )
    assert len(rows) == 2822
