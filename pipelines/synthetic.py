"""Synthetic pathology reports and the matching mini knowledge graph.

They exist so that the demo and the tests run anywhere, with nothing but the
installed package; real data is what results are about. Everything is
deterministic for a seed.

The built-in ontology holds ICD-O-3 sites with subsites, whether the organ is
paired (laterality), histologies with synonyms and abbreviations and the sites
they occur at, and grades. A report has specimen, gross, microscopic, diagnosis
and synoptic sections in varied wording; it mentions differentials that are
negated ("no evidence of lobular carcinoma"), may leave laterality or grade
unstated, and carries OCR-like noise (dropped, doubled and swapped letters,
runs of headers). Labels follow the registry's conventions: site (C50),
subsite (C50.4), laterality (Left / Right / empty), behavior (3, or 2 for in
situ), histology (8500), grade (G1–G3 or empty).

:func:`write_mini_graph` writes the same ontology as a UMLS ``META/`` folder
(MRCONSO, MRREL, MRSTY) so that ``kinpath kg build`` runs on it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class Site:
    code: str
    names: tuple[str, ...]
    subsites: tuple[tuple[str, tuple[str, ...]], ...]  # (code, names)
    paired: bool
    procedures: tuple[str, ...]


@dataclass(frozen=True)
class Histology:
    code: str
    names: tuple[str, ...]  # preferred first
    abbreviation: str | None
    sites: tuple[str, ...]
    in_situ: tuple[str, ...] = ()  # names of the /2 form, if any


SITES = (
    Site("C50", ("breast",), (
        ("C50.1", ("central portion of breast", "subareolar breast")),
        ("C50.2", ("upper inner quadrant of breast",)),
        ("C50.4", ("upper outer quadrant of breast",)),
        ("C50.5", ("lower outer quadrant of breast",)),
        ("C50.9", ("breast, nos", "breast")),
    ), True, ("lumpectomy", "mastectomy", "core needle biopsy")),
    Site("C34", ("lung",), (
        ("C34.1", ("upper lobe, lung", "upper lobe of lung")),
        ("C34.2", ("middle lobe, lung", "right middle lobe")),
        ("C34.3", ("lower lobe, lung", "lower lobe of lung")),
    ), True, ("lobectomy", "wedge resection", "pneumonectomy")),
    Site("C64", ("kidney",), (("C64.9", ("kidney, nos", "kidney")),), True,
         ("radical nephrectomy", "partial nephrectomy")),
    Site("C18", ("colon",), (
        ("C18.0", ("cecum",)),
        ("C18.2", ("ascending colon",)),
        ("C18.7", ("sigmoid colon",)),
    ), False, ("hemicolectomy", "sigmoid colectomy")),
    Site("C73", ("thyroid gland",), (("C73.9", ("thyroid gland", "thyroid")),), False,
         ("total thyroidectomy", "thyroid lobectomy")),
    Site("C61", ("prostate gland",), (("C61.9", ("prostate gland", "prostate")),), False,
         ("radical prostatectomy",)),
)  # fmt: skip

HISTOLOGIES = (
    Histology("8500", ("infiltrating duct carcinoma", "invasive ductal carcinoma", "ductal carcinoma"),
              "IDC", ("C50",), ("ductal carcinoma in situ",)),
    Histology("8520", ("lobular carcinoma", "invasive lobular carcinoma"), "ILC", ("C50",),
              ("lobular carcinoma in situ",)),
    Histology("8140", ("adenocarcinoma",), None, ("C34", "C18", "C61")),
    Histology("8070", ("squamous cell carcinoma", "epidermoid carcinoma"), "SCC", ("C34",)),
    Histology("8310", ("clear cell adenocarcinoma", "clear cell renal cell carcinoma"), "ccRCC", ("C64",)),
    Histology("8260", ("papillary adenocarcinoma", "papillary renal cell carcinoma"), None, ("C64",)),
    Histology("8480", ("mucinous adenocarcinoma", "colloid carcinoma"), None, ("C18",)),
    Histology("8050", ("papillary carcinoma",), "PTC", ("C73",)),
    Histology("8330", ("follicular adenocarcinoma", "follicular carcinoma"), "FTC", ("C73",)),
)  # fmt: skip

GRADES = {
    "G1": ("well differentiated", "grade 1", "low grade"),
    "G2": ("moderately differentiated", "grade 2", "intermediate grade"),
    "G3": ("poorly differentiated", "grade 3", "high grade"),
}

_HEADERS = ("SPECIMEN", "GROSS DESCRIPTION", "MICROSCOPIC", "FINAL DIAGNOSIS", "SYNOPTIC REPORT")


def _noise(text: str, rng: random.Random, rate: float) -> str:
    """OCR-like damage: dropped, doubled and swapped letters, lost spaces."""
    out = []
    for ch in text:
        r = rng.random()
        if ch.isalpha() and r < rate:
            op = rng.randrange(3)
            if op == 0:
                continue  # dropped
            if op == 1:
                out.append(ch + ch)  # doubled
                continue
            out.append(rng.choice("rnmcl"))  # misread
            continue
        if ch == " " and r < rate / 2:
            continue
        out.append(ch)
    return "".join(out)


def synthetic_report(rng: random.Random, noise: float = 0.01) -> tuple[str, dict[str, str]]:
    site = rng.choice(SITES)
    hist = rng.choice([h for h in HISTOLOGIES if site.code in h.sites])
    sub_code, sub_names = rng.choice(site.subsites)
    in_situ = bool(hist.in_situ) and rng.random() < 0.15
    grade = rng.choice([*GRADES, ""]) if rng.random() < 0.85 else ""
    side = rng.choice(["Left", "Right"]) if site.paired else ""
    side_word = side.lower() if side and rng.random() < 0.9 else ""
    name = rng.choice(hist.in_situ) if in_situ else rng.choice(hist.names)
    place = rng.choice(sub_names)
    where = f"{side_word} {place}".strip()
    proc = rng.choice(site.procedures)
    size = f"{rng.randint(3, 60) / 10:.1f}"
    other = rng.choice([h for h in HISTOLOGIES if h.code != hist.code])

    diag = (
        f"{name} of the {where}" if rng.random() < 0.5 else f"{where.capitalize()}, {proc}: {name}"
    )
    if hist.abbreviation and rng.random() < 0.5:
        diag = f"{name} ({hist.abbreviation}) of the {where}"
    grade_txt = ""
    if grade:
        grade_txt = rng.choice(
            (f"Histologic grade: {rng.choice(GRADES[grade])}.", f"The tumor is {GRADES[grade][0]}.")
        )
    sections = [
        f"{_HEADERS[0]}: {where}, {proc}.",
        f"{_HEADERS[1]}: Received fresh labeled with the patient's name and '{where}'. "
        f"The specimen measures {size} x {rng.randint(1, 9)}.{rng.randint(0, 9)} cm. "
        f"Sectioning reveals a {rng.choice(('firm', 'tan-white', 'ill-defined', 'well-circumscribed'))} "
        f"mass measuring {size} cm. Representative sections are submitted in {rng.randint(2, 12)} cassettes.",
        f"{_HEADERS[2]}: Sections show {name}"
        + (f" ({hist.abbreviation})" if hist.abbreviation and rng.random() < 0.4 else "")
        + f". {grade_txt} "
        + rng.choice(
            (
                f"No evidence of {other.names[0]}.",
                f"Negative for {other.names[0]}.",
                f"{other.names[0].capitalize()} is not identified.",
            )
        ),
        f"{_HEADERS[3]}: {diag}. "
        + (
            "Margins are free of tumor. "
            if rng.random() < 0.6
            else "Tumor extends to the inked margin. "
        )
        + f"Lymph nodes: {rng.randint(0, 3)}/{rng.randint(3, 20)} positive.",
    ]
    if rng.random() < 0.6:
        sections.append(
            f"{_HEADERS[4]}: Procedure: {proc}. Tumor site: {place}. "
            + (f"Laterality: {side.lower()}. " if side and rng.random() < 0.8 else "")
            + f"Histologic type: {rng.choice(hist.names)}. "
            + (f"Grade: {grade[-1]}. " if grade and rng.random() < 0.7 else "")
            + f"Tumor size: {size} cm."
        )
    if rng.random() < 0.3:
        rng.shuffle(sections)
    text = _noise("\n".join(sections), rng, noise)
    labels = {
        "site": site.code,
        "subsite": sub_code,
        "laterality": side,
        "behavior": "2" if in_situ else "3",
        "histology": hist.code,
        "grade": grade,
    }
    return text, labels


STYLES = ("house", "scanned")


def _scanned(text: str, rng: random.Random) -> str:
    """The same report from another hospital's scanner: capitals, page headers with barcodes
    between the lines, and five times the OCR noise."""

    def header() -> str:
        return (f"PAGE {rng.randint(1, 3)} OF 3  ACC# {rng.randint(10**7, 10**8)}  "
                f"{'I' * rng.randint(3, 8)}{'1' * rng.randint(3, 8)}  REDACTED")  # fmt: skip

    lines = [header()]
    for line in text.upper().split("\n"):
        lines.append(line)
        if rng.random() < 0.5:
            lines.append(header())
    return _noise("\n".join(lines), rng, 0.05)


def synthetic_reports(
    n: int, seed: int = 0, noise: float = 0.01, style: str = "house"
) -> pd.DataFrame:
    """``n`` reports with ids, labels and a fixed 70/15/15 train/val/test split. ``style``:
    ``house`` (the demo's), or ``scanned`` (the same reports as another source writes them:
    what a drift check must notice)."""
    if style not in STYLES:
        raise ValueError(f"style is one of {STYLES}, not {style!r}")
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        text, labels = synthetic_report(rng, noise)
        if style == "scanned":
            text = _scanned(text, rng)
        split = "train" if i % 20 < 14 else "val" if i % 20 < 17 else "test"
        rows.append({"report_id": f"SYN-{seed}-{i:05d}", **labels, "split": split, "text": text})
    return pd.DataFrame(rows)


def write_valid_combinations(path: Path) -> Path:
    """The built-in ontology's valid site × histology/behavior pairs, in SEER's table layout
    (``site,histology``: ``C34.1,8140/3``), for the demo's edit checks."""
    rows = ["site,histology"]
    for h in HISTOLOGIES:
        for site in SITES:
            if site.code in h.sites:
                behaviors = ("3", "2") if h.in_situ else ("3",)
                rows += [f"{u},{h.code}/{b}" for u, _ in site.subsites for b in behaviors]
    path.write_text("\n".join(rows) + "\n")
    return path


def write_mini_graph(meta: Path) -> Path:
    """The built-in ontology as a UMLS META/ folder (MRCONSO, MRREL, MRSTY)."""
    meta.mkdir(parents=True, exist_ok=True)
    conso: list[str] = []
    rel: list[str] = []
    sty: list[str] = []
    n = 0

    def concept(cui: str, code: str, names: tuple[str, ...], tui: str, sty_name: str) -> None:
        nonlocal n
        for j, name in enumerate(names):
            n += 1
            ts, tty = ("P", "PT") if j == 0 else ("S", "SY")
            conso.append(
                f"{cui}|ENG|{ts}|L{n}|PF|S{n}|{'Y' if j == 0 else 'N'}|A{n}||||ICDO3|{tty}|{code}|{name}|0|N|256|"
            )
        sty.append(f"{cui}|{tui}|A1|{sty_name}|AT{cui[1:]}|256|")

    def relation(child: str, parent: str, r: str = "PAR") -> None:
        rela = {"PAR": "inverse_isa", "RO": "related_to"}[r]
        rel.append(f"{child}||CUI|{r}|{parent}||CUI|{rela}|R{len(rel)}||ICDO3|ICDO3||Y|N||")
        if r == "PAR":
            rel.append(f"{parent}||CUI|CHD|{child}||CUI|isa|R{len(rel)}||ICDO3|ICDO3||Y|N||")

    topo, morph = "C8000001", "C8000002"
    concept(topo, "T", ("topography",), "T023", "Body Part, Organ, or Organ Component")
    concept(morph, "M", ("carcinoma", "malignant neoplasm"), "T191", "Neoplastic Process")
    for i, site in enumerate(SITES):
        cui = f"C81{i:05d}"
        concept(cui, site.code, site.names, "T023", "Body Part, Organ, or Organ Component")
        relation(cui, topo)
        for k, (code, names) in enumerate(site.subsites):
            sub = f"C82{i:03d}{k:02d}"
            concept(sub, code, names, "T023", "Body Part, Organ, or Organ Component")
            relation(sub, cui)
    for i, h in enumerate(HISTOLOGIES):
        cui = f"C83{i:05d}"
        names = h.names + ((h.abbreviation,) if h.abbreviation else ())
        concept(cui, f"{h.code}/3", names, "T191", "Neoplastic Process")
        relation(cui, morph)
        for s in h.sites:
            relation(cui, f"C81{[x.code for x in SITES].index(s):05d}", "RO")
        if h.in_situ:
            ins = f"C84{i:05d}"
            concept(ins, f"{h.code}/2", h.in_situ, "T191", "Neoplastic Process")
            relation(ins, cui, "RO")
    for g, names in GRADES.items():
        concept(f"C85{g[-1]:0>5}", g, names, "T185", "Classification")
    (meta / "MRCONSO.RRF").write_text("\n".join(conso) + "\n")
    (meta / "MRREL.RRF").write_text("\n".join(rel) + "\n")
    (meta / "MRSTY.RRF").write_text("\n".join(sty) + "\n")
    return meta
