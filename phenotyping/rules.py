"""Registry coding rules as data: which sites carry laterality, which site × histology pairs are valid.

* :func:`laterality_sites` reads ``tables/laterality_sites.csv`` (package data):
  SEER's paired organ sites, the only topography codes for which laterality is
  coded; every other site is ``not applicable`` (SEER laterality code 0). The
  file names its source (SEER Program Coding and Staging Manual 2024).
* :func:`read_valid_combinations` reads a table of valid ICD-O-3 site ×
  histology/behavior combinations, two columns ``site,histology`` with rows
  like ``C34.1,8140/3`` — SEER's site/type validation list, which a registry
  has (``../shared/data/registry/seer-site-histology-valid.csv``). It is data
  the user supplies, not part of the package.

A site is given at subsite level (``C34.1``) or as the 3-character site
(``C34``); :func:`laterality_applies` answers True, False, or None where the
site alone cannot tell (C44 skin: the trunk and the limbs are paired, the lip
and the scalp are not).
"""

from __future__ import annotations

import csv
import io
from functools import cache
from importlib import resources
from pathlib import Path

from kinpath.common import InputError

NOT_APPLICABLE = "not applicable"  # SEER laterality code 0: not a paired site


@cache
def laterality_sites() -> frozenset[str]:
    """Subsite codes (``C34.1``) for which laterality is coded."""
    text = (
        resources.files("kinpath.phenotyping").joinpath("tables/laterality_sites.csv").read_text()
    )
    rows = csv.DictReader(io.StringIO("".join(x for x in text.splitlines(True) if x[:1] != "#")))
    return frozenset(r["code"] for r in rows)


# 3-character sites all of whose ICD-O-3 subsites are on the list (C34.0-C34.9, ...);
# the others on it are paired only in part (C44.6 skin of the arm is, C44.0 lip is not)
WHOLLY_PAIRED = frozenset(
    {"C07", "C09", "C34", "C50", "C56", "C62", "C64", "C65", "C66", "C69", "C74"}
)


def laterality_applies(code: str) -> bool | None:
    """Whether laterality is coded at a subsite (``C50.4``) or a site (``C50``); None: it depends."""
    if "." in code:
        return code in laterality_sites()
    if code in WHOLLY_PAIRED:
        return True
    return None if any(c.startswith(code + ".") for c in laterality_sites()) else False


def read_valid_combinations(path: str | Path) -> frozenset[tuple[str, str]]:
    """``(site, histology/behavior)`` pairs from a ``site,histology`` CSV (``C34.1,8140/3``)."""
    path = Path(path)
    if not path.exists():
        raise InputError("no such site × histology table", path=path)
    out = set()
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        if [h.strip().lower() for h in header[:2]] != ["site", "histology"]:
            raise InputError("expected the header 'site,histology'", path=path, line=1)
        for n, row in enumerate(reader, 2):
            if len(row) < 2 or not row[0].strip() or "/" not in row[1]:
                raise InputError("expected 'C34.1,8140/3'", path=path, line=n)
            out.add((row[0].strip().upper(), row[1].strip()))
    if not out:
        raise InputError("the site × histology table has no rows", path=path)
    return frozenset(out)
