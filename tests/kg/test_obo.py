from pathlib import Path

import pytest

from kinpath.common import InputError
from kinpath.kg.obo import read_obo


def test_reads_names_synonyms_parents_xrefs(fixtures: Path) -> None:
    terms = {t.id: t for t in read_obo(fixtures / "mini.obo")}
    assert set(terms) == {
        "NCIT:C0001",
        "NCIT:C0002",
        "NCIT:C0003",
        "NCIT:C0005",
    }  # obsolete dropped
    idc = terms["NCIT:C0003"]
    assert idc.name == "Breast Ductal Carcinoma"
    assert ("Infiltrating duct carcinoma, NOS", "EXACT") in idc.synonyms
    assert ("Ductal carcinoma of the breast", "RELATED") in idc.synonyms
    assert idc.parents == ("NCIT:C0002", "NCIT:C0005")  # a DAG: two parents, comments dropped
    assert idc.xrefs == ("UMLS:C9000007",)
    assert terms["NCIT:C0005"].name == "Breast Neoplasm"  # trailing {qualifier} dropped


def test_obsolete_on_request(fixtures: Path) -> None:
    assert len(list(read_obo(fixtures / "mini.obo", include_obsolete=True))) == 5


def test_bad_synonym_names_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.obo"
    p.write_text("format-version: 1.4\n\n[Term]\nid: X:1\nname: x\nsynonym: no quotes EXACT []\n")
    with pytest.raises(InputError, match=r"bad\.obo:6"):
        list(read_obo(p))


@pytest.mark.shared
def test_ncit_neoplasm_subtree(shared: Path) -> None:
    terms = list(read_obo(shared / "kg" / "ncit-neoplasm.obo"))
    assert len(terms) == 7579
    assert sum(len(t.synonyms) for t in terms) == 1250
