"""Reading a night's reports: every record comes out as a row or an error, whatever the file holds."""

from __future__ import annotations

import json
import os
from pathlib import Path

from kinpath.kg.reports import read_records


def _kinds(path: Path) -> list[tuple[str, str]]:
    return [(r.report_id, r.error) for r in read_records(path)]


def test_a_quote_left_open_ends_the_file_as_one_error_row(tmp_path: Path) -> None:
    p = tmp_path / "u.csv"
    p.write_text('report_id,text\nr1,a\nr2,"b\nr3,c\nr4,d\nr5,e\n')
    records = list(read_records(p))
    assert [(r.report_id, r.error) for r in records] == [("r1", ""), ("", "malformed_row")]
    assert "line 3" in records[1].detail and "never closed" in records[1].detail
    assert "rest of the file" in records[1].detail
    # a closed multi-line quote is one record, as before
    p.write_text('report_id,text\nr1,"two\nlines"\nr2,b\n')
    assert [(r.report_id, r.text) for r in read_records(p)] == [("r1", "two\nlines"), ("r2", "b")]


def test_an_unclosed_quote_in_multi_line_reports_never_turns_text_into_ids(
    tmp_path: Path,
) -> None:
    """The usual report file: every text quoted over several lines. One closing quote is
    missing; the parser then meets the next record's opening quote in the middle of a field.
    Reading on from there would make the reports' own lines records and their words ids."""
    body = "Patient {name}\nFINAL DIAGNOSIS: adenocarcinoma, {site}\nGrade 2"
    rows = [("r1", "Ada Lovelace", "lung"), ("r2", "Zebulon Quixotehart", "colon"),
            ("r3", "Grace Hopper", "breast"), ("r4", "Alan Turing", "kidney"),
            ("r5", "Edsger Dijkstra", "liver")]  # fmt: skip
    lines = ["report_id,text"]
    for rid, name, site in rows:
        text = body.format(name=name, site=site)
        lines.append(f'{rid},"{text}' + ('"' if rid != "r2" else ""))
    p = tmp_path / "night.csv"
    p.write_text("\n".join(lines) + "\n")
    records = list(read_records(p))
    assert [(r.report_id, r.error) for r in records] == [("r1", ""), ("", "malformed_row")]
    assert "line 5" in records[1].detail  # where r2 begins
    for r in records:  # no word of any report became an id or a detail
        for _, name, site in rows:
            for word in (*name.split(), site, "Patient", "DIAGNOSIS"):
                assert word not in r.report_id and word not in r.detail
    # a row with a field too many: its id field is not trusted either
    p.write_text("report_id,text\nZebulon,Quixotehart,carcinoma\nr2,b\n")
    assert [(r.report_id, r.error) for r in read_records(p)] == [("", "malformed_row"), ("r2", "")]


def test_a_byte_order_mark_is_dropped(tmp_path: Path) -> None:
    csv_path = tmp_path / "excel.csv"
    csv_path.write_bytes("\ufeffreport_id,text\nr1,carcinoma\n".encode())
    assert _kinds(csv_path) == [("r1", "")]
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_bytes(
        "\ufeff".encode() + b'{"report_id": "r1", "text": "a"}\n{"report_id": "r2", "text": "b"}\n'
    )
    assert _kinds(jsonl) == [("r1", ""), ("r2", "")]
    folder = tmp_path / "txt"
    folder.mkdir()
    (folder / "r1.txt").write_bytes("\ufeffcarcinoma".encode())
    assert [r.text for r in read_records(folder)] == ["carcinoma"]


def test_bad_json_lines_are_records_not_crashes(tmp_path: Path) -> None:
    p = tmp_path / "in.jsonl"
    deep = "[" * 100_000 + "]" * 100_000
    p.write_text(
        "\n".join([
            json.dumps({"report_id": "r1", "text": "a"}),
            deep,
            json.dumps({"report_id": "r3", "text": {"nested": "x"}}),
            json.dumps({"report_id": "r4", "text": "d"}),
        ]) + "\n"
    )  # fmt: skip
    kinds = _kinds(p)
    assert kinds == [("r1", ""), ("", "malformed_row"), ("r3", "malformed_row"), ("r4", "")]


def test_a_txt_folder_reads_only_its_own_files(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "night"
    folder.mkdir()
    (folder / "a.txt").write_text("carcinoma of the lung")
    (folder / "dir.txt").mkdir()  # a folder named like a report
    (folder / "sub").mkdir()
    (folder / "sub" / "hidden.txt").write_text("not read")
    os.symlink(tmp_path / "nowhere.txt", folder / "dangling.txt")
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0")
    os.symlink(secret, folder / "outside.txt")
    (folder / "inside.txt").symlink_to(folder / "a.txt")  # a link within the folder is read
    records = {r.report_id: r for r in read_records(folder)}
    assert set(records) == {"a", "dangling", "dir", "inside", "outside"}
    assert records["a"].error == "" and records["inside"].text == "carcinoma of the lung"
    for name in ("dangling", "dir", "outside"):
        assert records[name].error == "unreadable" and records[name].text == ""
    assert "out of the folder" in records["outside"].detail
    assert "1 subfolder(s) not read" in caplog.text
