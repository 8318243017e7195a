"""The codes a registrar can choose, with their ICD-O-3 names, and a search over them.

Site, subsite and histology codes come from the knowledge graph (``kinpath kg build``):
each ICD-O-3 code's preferred name and every synonym of its concept (ICD-O terms and
the NCI Metathesaurus strings of the same CUI). A histology is written as the data
writes it (``8140``, the behavior apart); its graph name is its malignant (``/3``)
form's where there is one. Laterality, behavior and grade have short fixed lists.
Codes the model knows (the scored table's alternatives) are always choosable.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

GRAPH_TASKS = ("site", "subsite", "histology")
FIXED = {
    "laterality": {"Left": "left", "Right": "right", "Bilateral": "both sides",
                   "Midline": "midline", "not applicable": "unpaired site"},
    "behavior": {"0": "benign", "1": "uncertain whether benign or malignant",
                 "2": "in situ", "3": "malignant"},
    "grade": {"G1": "well differentiated", "G2": "moderately differentiated",
              "G3": "poorly differentiated", "G4": "undifferentiated", "GX": "cannot be assessed",
              "High Grade": "high grade", "Low Grade": "low grade"},
}  # fmt: skip
_SITE = re.compile(r"^C\d\d$")
_SUBSITE = re.compile(r"^C\d\d\.\d$")
_MORPH = re.compile(r"^(\d{4})/(\d)$")


def _task_of(code: str) -> tuple[str, str] | None:
    if _SITE.match(code):
        return "site", code
    if _SUBSITE.match(code):
        return "subsite", code
    m = _MORPH.match(code)
    if m:
        return "histology", m.group(1)
    return None


class CodeBook:
    """Per task: code → (name, synonyms)."""

    def __init__(self, entries: dict[str, dict[str, tuple[str, list[str]]]]):
        self.entries = entries

    @classmethod
    def from_graph(
        cls, folder: Path | None, known: Mapping[str, Iterable[str]] | None = None
    ) -> CodeBook:
        entries: dict[str, dict[str, tuple[str, list[str]]]] = {
            t: {c: (name, []) for c, name in names.items()} for t, names in FIXED.items()
        }
        for t in GRAPH_TASKS:
            entries[t] = {}
        if folder is not None:
            from kinpath.kg.graph import load_graph

            atoms = load_graph(Path(folder)).atoms
            by_cui: dict[str, list[str]] = defaultdict(list)
            for cui, s in zip(atoms["cui"], atoms["string"], strict=True):
                by_cui[cui].append(str(s))
            icdo = atoms[atoms["sab"] == "ICDO3"].sort_values("rank", kind="stable")
            for code, tty, cui, s in zip(
                icdo["code"], icdo["tty"], icdo["cui"], icdo["string"], strict=True
            ):
                where = _task_of(str(code))
                if where is None:
                    continue
                task, c = where
                behavior3 = task != "histology" or str(code).endswith("/3")
                name, syn = entries[task].get(c, ("", []))
                if tty in ("PT", "HT") and (not name or behavior3):
                    name = str(s)
                entries[task][c] = (name or str(s), [*syn, str(s), *by_cui[cui]])
        for task, codes in (known or {}).items():
            for c in codes:
                if c:
                    entries.setdefault(task, {}).setdefault(c, ("", []))
        return cls(entries)

    def name(self, task: str, code: str) -> str:
        return self.entries.get(task, {}).get(code, ("", []))[0]

    def search(self, task: str, query: str, limit: int = 20) -> list[dict[str, str]]:
        """Codes of ``task`` whose code, name or a synonym holds every word of ``query``; a
        code or name match first."""
        words = [w for w in re.split(r"\W+", query.lower()) if w]
        hits: list[tuple[int, str, str]] = []
        for code, (name, syn) in self.entries.get(task, {}).items():
            hay = " ".join([code, name, *syn]).lower()
            if all(w in hay for w in words):
                first = 0 if query.strip().lower() in (code.lower(), name.lower()) else 1
                starts = 0 if code.lower().startswith(query.strip().lower()) else 1
                hits.append((first * 2 + starts, code, name))
        hits.sort()
        return [{"code": c, "name": n} for _, c, n in hits[:limit]]


_FORMAT = {"site": _SITE, "subsite": _SUBSITE, "histology": re.compile(r"^\d{4}$")}


def valid_code(task: str, code: str, book: CodeBook) -> bool:
    """A code a registrar may enter for ``task``: one the book has, or one in the task's ICD-O-3
    form (a code newer than the graph)."""
    if not code or len(code) > 40:
        return False
    if code in book.entries.get(task, {}):
        return True
    pattern = _FORMAT.get(task)
    return bool(pattern and pattern.match(code))
