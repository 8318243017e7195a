import json
from pathlib import Path

import pytest

from kinpath.common import InputError
from kinpath.kg.graph import build_graph, load_graph


@pytest.fixture
def graph_dir(tmp_path: Path, fixtures: Path) -> Path:
    build_graph(
        tmp_path / "g", umls_dirs=[fixtures / "umls_META"], obo_files=[fixtures / "mini.obo"]
    )
    return tmp_path / "g"


def test_build_and_reload(graph_dir: Path) -> None:
    g = load_graph(graph_dir)
    c = g.manifest["counts"]
    assert c["strings"] == 16 + 7  # UMLS atoms kept + OBO names and synonyms
    assert c["concepts"] == 10 + 4
    # the MRREL row to a concept the graph lacks (C9000099) is dropped
    assert len(g.relations[g.relations["source"] == "ICDO3"]) == 12
    scc = g.concept("C9000005")
    assert scc.name == "Squamous cell carcinoma, NOS"  # the TS=P, ISPREF=Y atom
    assert scc.semantic_types == ("Neoplastic Process",)
    assert g.concept("C9000001").sources == ("ICDO3", "NCI")
    terms = g.terms()
    assert terms["squamous_cell_carcinoma"] == {"C9000005"}
    assert terms["infiltrating_duct_carcinoma"] == {"C9000007", "NCIT:C0003"}
    # an OBO xref joins the two sources
    xref = g.relations[(g.relations["head"] == "NCIT:C0003") & (g.relations["rel"] == "SY")]
    assert xref["tail"].tolist() == ["C9000007"]
    assert g.concepts.loc["C9000006", "definition"].startswith("A carcinoma")


def test_manifest_has_provenance(graph_dir: Path) -> None:
    m = json.loads((graph_dir / "manifest.json").read_text())
    umls = m["sources"][0]
    assert umls["kind"] == "umls" and set(umls["files"]) == {
        "MRCONSO.RRF",
        "MRDEF.RRF",
        "MRREL.RRF",
        "MRSTY.RRF",
    }
    assert all(len(h) == 64 for h in umls["files"].values())
    assert umls["counts"] == {"mrconso_rows": 18, "strings_kept": 16, "dropped_by_filters": 2}
    assert m["filters"]["languages"] == ["ENG"] and m["filters"]["keep_suppressed"] is False


def test_checksum_is_stable_and_tracks_content(tmp_path: Path, fixtures: Path) -> None:
    a = build_graph(tmp_path / "a", umls_dirs=[fixtures / "umls_META"])
    b = build_graph(tmp_path / "b", umls_dirs=[fixtures / "umls_META"])
    c = build_graph(tmp_path / "c", umls_dirs=[fixtures / "umls_no_trailing"])
    ca, cb, cc = (load_graph(r.out).checksum for r in (a, b, c))
    assert ca == cb and ca != cc


def test_no_source_and_not_a_graph(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no sources"):
        build_graph(tmp_path / "x")
    with pytest.raises(InputError, match=r"no MRCONSO\.RRF"):
        build_graph(tmp_path / "x", umls_dirs=[tmp_path])
    with pytest.raises(InputError, match="not a graph folder"):
        load_graph(tmp_path)


@pytest.mark.shared
def test_real_nci_icdo_graph(tmp_path: Path, shared: Path) -> None:
    res = build_graph(tmp_path / "g", umls_dirs=[shared / "kg" / "nci-icdo-meta"])
    assert (res.counts["strings"], res.counts["concepts"], res.counts["relations"]) == (
        5685,
        2591,
        6932,
    )


def _meta_copy(src: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    for f in src.iterdir():
        (dest / f.name).write_bytes(f.read_bytes())
    return dest


def test_a_byte_order_mark_does_not_corrupt_the_first_row(tmp_path: Path, fixtures: Path) -> None:
    meta = _meta_copy(fixtures / "umls_META", tmp_path / "META")
    for name in ("MRCONSO.RRF", "MRREL.RRF"):
        (meta / name).write_bytes(b"\xef\xbb\xbf" + (meta / name).read_bytes())
    g = load_graph(build_graph(tmp_path / "g", umls_dirs=[meta]).out)
    plain = load_graph(build_graph(tmp_path / "p", umls_dirs=[fixtures / "umls_META"]).out)
    assert "C9000001" in set(g.atoms["cui"]) and not any(
        c.startswith("\ufeff") for c in g.atoms["cui"]
    )
    assert len(g.relations) == len(plain.relations)


def test_a_row_missing_a_field_is_bad_not_shifted(tmp_path: Path, fixtures: Path) -> None:
    meta = _meta_copy(fixtures / "umls_META", tmp_path / "META")
    rows = (meta / "MRCONSO.RRF").read_text().splitlines()
    rows[2] = rows[2].replace("|ENG|", "|", 1)  # a trailing-| file whose row 3 lost LAT
    (meta / "MRCONSO.RRF").write_text("\n".join(rows) + "\n")
    with pytest.raises(InputError, match=r"MRCONSO\.RRF:3: expected 18 .* with a trailing"):
        build_graph(tmp_path / "g", umls_dirs=[meta])
    res = build_graph(tmp_path / "g", umls_dirs=[meta], on_error="skip")
    assert res.skipped[str(meta / "MRCONSO.RRF")] == 1


def test_a_failed_build_leaves_the_old_graph(tmp_path: Path, fixtures: Path) -> None:
    out = tmp_path / "g"
    build_graph(out, umls_dirs=[fixtures / "umls_META"])
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    meta = _meta_copy(fixtures / "umls_META", tmp_path / "META")
    (meta / "MRCONSO.RRF").write_bytes(b"\xff\xfe binary\n")
    with pytest.raises(InputError):
        build_graph(out, umls_dirs=[meta])
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".g")] == []


def test_empty_or_missing_files_are_not_silent(
    tmp_path: Path, fixtures: Path, caplog: pytest.LogCaptureFixture
) -> None:
    meta = _meta_copy(fixtures / "umls_META", tmp_path / "META")
    (meta / "MRREL.RRF").write_bytes(b"")
    (meta / "MRSTY.RRF").unlink()
    res = build_graph(tmp_path / "g", umls_dirs=[meta])
    assert res.counts["relations"] == 0
    assert "MRREL.RRF has no rows" in caplog.text and "no MRSTY.RRF" in caplog.text
    (meta / "MRCONSO.RRF").write_bytes(b"\xff\xfe\x00\x01\n" * 5)  # binary throughout
    with pytest.raises(InputError, match="no readable row"):
        build_graph(tmp_path / "h", umls_dirs=[meta], on_error="skip")
