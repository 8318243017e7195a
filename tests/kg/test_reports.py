"""Report tables: a byte-order mark is not part of the first column; several tables read as one."""

from pathlib import Path

import pandas as pd

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
