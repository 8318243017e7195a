"""Report tables read strictly (training): a byte-order mark is not part of the first column;
several tables read as one; the first bad record stops the reading and is named."""

from pathlib import Path

import pandas as pd
import pytest

from kinpath.common import InputError
from kinpath.kg.reports import SOURCE, read_reports, source_names, table_sha256


def test_a_byte_order_mark_is_dropped(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_bytes("\ufeffreport_id,text\nr1,x\n".encode())
    (tmp_path / "a.jsonl").write_bytes("\ufeff".encode() + b'{"report_id": "r1", "text": "x"}\n')
    for name in ("a.csv", "a.jsonl"):
        (chunk,) = read_reports(tmp_path / name)
        assert chunk["report_id"].tolist() == ["r1"]


def test_several_tables_read_as_one_with_their_splits(tmp_path: Path) -> None:
    for name, ids in (("one", ["a1", "a2"]), ("two", ["b1"])):
        (tmp_path / name).mkdir()
        pd.DataFrame(
            {"report_id": ids, "text": "x", "split": ["train", "test"][: len(ids)]}
        ).to_csv(tmp_path / name / "reports.csv", index=False)
    paths = [tmp_path / "one" / "reports.csv", tmp_path / "two" / "reports.csv"]
    assert source_names(paths) == ["one", "two"]  # same file names: their folders tell them apart
    table = pd.concat(read_reports(paths))
    assert table["report_id"].tolist() == ["a1", "a2", "b1"]
    assert table[SOURCE].tolist() == ["one", "one", "two"]
    assert table["split"].tolist() == ["train", "test", "train"]
    test = pd.concat(read_reports(paths, where={"split": "test"}))
    assert test["report_id"].tolist() == ["a2"]
    assert table_sha256(paths) != table_sha256(paths[0]) != table_sha256(paths[1])
    assert SOURCE not in pd.concat(read_reports(paths[0])).columns


def test_strict_reading_stops_at_the_first_bad_record_and_names_it(tmp_path: Path) -> None:
    """Training data: the record the batch job would turn into an error row stops the reading,
    with the file, the line or record, and the kind of problem, and none of the report's text."""
    cases = {
        "open.csv": ('report_id,site,text\nr1,C34,a\nr2,C50,"Jane Roe\nr3,C18,c\n', "line 3"),
        "dup.csv": ("report_id,site,text\nr1,C34,a\nr1,C50,Jane Roe\n", "record 2"),
        "width.csv": ("report_id,site,text\nr1,C34,a\nr2,Jane Roe,b,c\n", "line 3"),
        "noid.jsonl": ('{"report_id": "r1", "text": "a"}\n{"text": "Jane Roe"}\n', "record 2"),
        "bad.jsonl": ('{"report_id": "r1", "text": "a"}\n{"report_id": "r2", "text": \n', "line 2"),
    }
    kinds = ["malformed_row", "duplicate_id", "malformed_row", "missing_id", "malformed_row"]
    for (name, (content, where)), kind in zip(cases.items(), kinds, strict=True):
        (tmp_path / name).write_text(content)
        with pytest.raises(InputError) as e:
            list(read_reports(tmp_path / name))
        assert str(tmp_path / name) in str(e.value) and where in str(e.value), str(e.value)
        assert kind in str(e.value) and "Jane" not in str(e.value) and "Roe" not in str(e.value)
    (tmp_path / "latin1.csv").write_bytes("report_id,site,text\nr1,C34,caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="line 2: bytes are not UTF-8"):
        list(read_reports(tmp_path / "latin1.csv"))


def test_strict_reading_keeps_every_column_in_order_in_every_format(tmp_path: Path) -> None:
    table = pd.DataFrame(
        {
            "site": ["C34", ""],
            "report_id": [" r1", "r2"],
            "text": ["a, b\nc", "d"],
            "grade": ["2", ""],
        }
    )
    table.to_csv(tmp_path / "t.csv", index=False)
    table.to_parquet(tmp_path / "t.parquet", index=False)
    table.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    for name in ("t.csv", "t.parquet", "t.jsonl"):
        (chunk,) = read_reports(tmp_path / name)
        assert list(chunk.columns) == ["site", "report_id", "text", "grade"], name
        assert chunk["report_id"].tolist() == ["r1", "r2"], name  # ids stripped, as in batches
        assert chunk["text"].tolist() == ["a, b\nc", "d"], name
        assert chunk["grade"].tolist() == ["2", ""], name
    with pytest.raises(InputError, match="no column 'split'"):
        list(read_reports(tmp_path / "t.csv", where={"split": "test"}))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"holds no \.txt reports"):
        list(read_reports(tmp_path / "empty"))
