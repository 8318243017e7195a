"""Streaming readers for the UMLS Rich Release Format (RRF) of a ``META/`` folder.

An RRF file is UTF-8 text, one row a line, fields separated by ``|``. A real
release ends every row with a trailing ``|`` (so a row splits into one more,
empty, field); some extracts, such as the cTAKES test slice, do not. Both are
accepted, one per file: the first row decides, and a later row in the other
form (a field missing from a trailing-``|`` file reads as a row without the
trailing ``|``) is a bad row, not a row shifted by one field. A byte-order
mark before the first row is dropped. The files read here, with their fields in order:

``MRCONSO.RRF`` (concept names and sources, one atom a row)
    CUI, LAT, TS, LUI, STT, SUI, ISPREF, AUI, SAUI, SCUI, SDUI, SAB, TTY, CODE,
    STR, SRL, SUPPRESS, CVF
``MRREL.RRF`` (relations between concepts or atoms)
    CUI1, AUI1, STYPE1, REL, CUI2, AUI2, STYPE2, RELA, RUI, SRUI, SAB, SL, RG,
    DIR, SUPPRESS, CVF. ``REL`` is the relation *of CUI2 to CUI1*: in
    ``C1|..|PAR|C2`` C2 is the parent of C1 (RELA ``inverse_isa``).
``MRSTY.RRF`` (semantic types)
    CUI, TUI, STN, STY, ATUI, CVF
``MRDEF.RRF`` (definitions, optional)
    CUI, AUI, ATUI, SATUI, SAB, DEF, SUPPRESS, CVF

A full release has about 16 M atoms and 60 M relations, so nothing here holds a
file in memory: :class:`RrfFile` yields rows one at a time, and the ``read_*``
functions yield column batches that a writer can append to parquet.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kinpath.common import InputError

log = logging.getLogger(__name__)

MRCONSO_FIELDS = (
    "CUI", "LAT", "TS", "LUI", "STT", "SUI", "ISPREF", "AUI", "SAUI", "SCUI", "SDUI",
    "SAB", "TTY", "CODE", "STR", "SRL", "SUPPRESS", "CVF",
)  # fmt: skip
MRREL_FIELDS = (
    "CUI1", "AUI1", "STYPE1", "REL", "CUI2", "AUI2", "STYPE2", "RELA", "RUI", "SRUI",
    "SAB", "SL", "RG", "DIR", "SUPPRESS", "CVF",
)  # fmt: skip
MRSTY_FIELDS = ("CUI", "TUI", "STN", "STY", "ATUI", "CVF")
MRDEF_FIELDS = ("CUI", "AUI", "ATUI", "SATUI", "SAB", "DEF", "SUPPRESS", "CVF")

#: SUPPRESS flags of rows a release marks as not for use: obsolete (O),
#: editor-suppressed (E) and suppressible (Y). ``N`` and empty are kept.
SUPPRESSED = frozenset({"O", "E", "Y"})

OnError = Literal["raise", "skip"]


@dataclass(frozen=True)
class RrfFilters:
    """Which rows of a release to keep. ``None`` keeps every value."""

    languages: tuple[str, ...] | None = ("ENG",)
    sources: tuple[str, ...] | None = None
    term_types: tuple[str, ...] | None = None
    relations: tuple[str, ...] | None = None
    relation_attributes: tuple[str, ...] | None = None
    keep_suppressed: bool = False


@dataclass
class RrfFile:
    """One RRF file, iterated row by row with its line numbers.

    A row whose field count is wrong, or whose bytes are not UTF-8, raises
    :class:`~kinpath.common.InputError` naming the file and line; with
    ``on_error="skip"`` it is counted in :attr:`skipped` and passed over.
    """

    path: Path
    fields: tuple[str, ...]
    on_error: OnError = "raise"
    lines: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)
    sha256: str = ""  # of the whole file, set once it has been read to the end

    def __iter__(self) -> Iterator[list[str]]:
        n = len(self.fields)
        digest = hashlib.sha256()
        trailing: bool | None = None  # decided by the first good row
        with open(self.path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                digest.update(raw)
                self.lines = lineno
                if lineno == 1:
                    raw = raw.removeprefix(b"\xef\xbb\xbf")
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    self._bad(lineno, f"bytes are not UTF-8 at column {e.start + 1}")
                    continue
                row = line.rstrip("\r\n").split("|")
                if len(row) == 1 and not row[0].strip():
                    continue  # a blank line, e.g. at the end of a hand-made slice
                ends = len(row) == n + 1 and row[-1] == ""
                if trailing is None and (ends or len(row) == n):
                    trailing = ends
                want = n + 1 if trailing else n
                if len(row) != want or (trailing and row[-1] != ""):
                    form = "with" if trailing else "without"
                    found = len(row) - (1 if trailing and row[-1] == "" else 0)
                    self._bad(lineno, f"expected {n} '|'-separated fields {form} a trailing '|' "
                                      f"as the file's first row, found {found}")  # fmt: skip
                    continue
                if trailing:
                    row.pop()
                yield row
        self.sha256 = digest.hexdigest()  # hashed while reading: a release is read once

    def _bad(self, lineno: int, why: str) -> None:
        if self.on_error == "raise":
            raise InputError(why, path=self.path, line=lineno)
        self.skipped.append((lineno, why))
        log.warning("%s:%d: skipped: %s", self.path, lineno, why)


def find_file(meta: Path, name: str, required: bool = True) -> Path | None:
    """The ``name`` file of a META folder (``MRCONSO.RRF``), or None if optional."""
    p = meta / name
    if p.exists():
        return p
    if required:
        raise InputError(f"no {name} in this folder (is it a UMLS META/ folder?)", path=meta)
    return None


def _keep(value: str, allowed: tuple[str, ...] | None) -> bool:
    return allowed is None or value in allowed


Batch = dict[str, list[str]]


def read_mrconso(rrf: RrfFile, filters: RrfFilters, batch_size: int = 100_000) -> Iterator[Batch]:
    """Atoms (CUI, SAB, TTY, CODE, STR and the preference flags) in column batches."""
    i = {k: j for j, k in enumerate(rrf.fields)}
    cols = ("CUI", "SAB", "TTY", "CODE", "STR", "TS", "STT", "ISPREF")
    idx = [i[c] for c in cols]
    lat, sab, tty, sup = i["LAT"], i["SAB"], i["TTY"], i["SUPPRESS"]
    batch: Batch = {c: [] for c in cols}
    for row in rrf:
        if not (
            _keep(row[lat], filters.languages)
            and _keep(row[sab], filters.sources)
            and _keep(row[tty], filters.term_types)
            and (filters.keep_suppressed or row[sup] not in SUPPRESSED)
        ):
            continue
        for c, j in zip(cols, idx, strict=True):
            batch[c].append(row[j])
        if len(batch["CUI"]) >= batch_size:
            yield batch
            batch = {c: [] for c in cols}
    if batch["CUI"]:
        yield batch


def read_mrrel(rrf: RrfFile, filters: RrfFilters, batch_size: int = 100_000) -> Iterator[Batch]:
    """Concept-to-concept relations (CUI1, REL, RELA, CUI2, SAB) in column batches.

    Self-relations (CUI1 == CUI2, e.g. between two atoms of one concept) carry no
    link between concepts and are dropped.
    """
    i = {k: j for j, k in enumerate(rrf.fields)}
    cols = ("CUI1", "REL", "RELA", "CUI2", "SAB")
    idx = [i[c] for c in cols]
    c1, c2, rel, rela, sab, sup = (i[k] for k in ("CUI1", "CUI2", "REL", "RELA", "SAB", "SUPPRESS"))
    batch: Batch = {c: [] for c in cols}
    for row in rrf:
        if not (
            row[c1] != row[c2]
            and _keep(row[rel], filters.relations)
            and _keep(row[rela], filters.relation_attributes)
            and _keep(row[sab], filters.sources)
            and (filters.keep_suppressed or row[sup] not in SUPPRESSED)
        ):
            continue
        for c, j in zip(cols, idx, strict=True):
            batch[c].append(row[j])
        if len(batch["CUI1"]) >= batch_size:
            yield batch
            batch = {c: [] for c in cols}
    if batch["CUI1"]:
        yield batch


def read_mrsty(rrf: RrfFile) -> dict[str, list[tuple[str, str]]]:
    """Semantic types by CUI: ``{cui: [(TUI, STY), ...]}`` (one small row per concept)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for row in rrf:
        out.setdefault(row[0], []).append((row[1], row[3]))
    return out


def read_mrdef(rrf: RrfFile, filters: RrfFilters) -> dict[str, str]:
    """The first kept definition of each CUI."""
    out: dict[str, str] = {}
    for row in rrf:
        if row[6] in SUPPRESSED and not filters.keep_suppressed:
            continue
        if _keep(row[4], filters.sources):
            out.setdefault(row[0], row[5])
    return out
