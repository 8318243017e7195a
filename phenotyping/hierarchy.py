"""The ICD-O-3 hierarchy of a model's classes, read from the knowledge graph, for back-off.

A registrar who cannot tell the fine code codes a broader one that is still
right: a lung tumour of unknown lobe is C34.9 (``Lung, NOS``), an
adenocarcinoma of unclear subtype 8140 (``Adenocarcinoma, NOS``).
:func:`hierarchy_from_graph` gives every class of the ``subsite`` and
``histology`` tasks the NOS code it backs off to, if any:

* ``subsite``: its ICD-O-3 category (the 3-character site, C34 for C34.1,
  which the graph holds as the ``HT`` atom above it) and that category's NOS
  code: its ``.9`` code (C34.9 ``Lung, NOS``), else the member whose
  preferred name ends in ", NOS" (C14.0 ``Pharynx, NOS``). Any subsite of C34 is right at the level of C34.9.
* ``histology``: its ICD-O-3 group (the graph's ``PAR`` row from the ICDO3
  source: 8255/3 → 814-838) and the group's NOS code: among the members whose
  preferred name ends in ", NOS", the one that the graph's finer hierarchy
  (NCI ``PAR`` rows, followed transitively) places above the most other
  members (8140/3 for 814-838, 8070/3 for 805-808). A class backs off to it
  only if the graph places the class under it (8380 endometrioid
  adenocarcinoma is an 8140; 8500 ductal carcinoma, in 850-854, is not an
  8520 lobular carcinoma, so it does not back off there).

Classes are the data's codes: subsites as ``C34.1``, histologies as ``8140``
(behavior apart); graph codes carry the behavior (``8140/3``), which is
dropped to match. A class the graph does not know never backs off.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

from kinpath.kg.graph import KnowledgeGraph

log = logging.getLogger(__name__)

BACKOFF_TASKS = ("subsite", "histology")


@dataclass(frozen=True)
class Hierarchy:
    """Per task: class → the NOS code it backs off to (absent: it does not back off)."""

    backoff: dict[str, dict[str, str]] = field(default_factory=dict)
    graph_checksum: str | None = None

    def as_dict(self) -> dict:
        return {"backoff": self.backoff, "graph_checksum": self.graph_checksum}

    @classmethod
    def from_dict(cls, d: dict | None) -> Hierarchy:
        d = d or {}
        return cls(d.get("backoff", {}), d.get("graph_checksum"))


def _class_code(task: str, code: str) -> str:
    return code.split("/", 1)[0] if task == "histology" else code


def _is_nos(name: str) -> bool:
    return name.rstrip().upper().endswith(", NOS")


def hierarchy_from_graph(
    graph: KnowledgeGraph, label_maps: dict[str, list[str]], checksum: str | None = None
) -> Hierarchy:
    """The back-off code of every class of the back-off tasks present in ``label_maps``."""
    a = graph.atoms
    icd = a[(a["sab"] == "ICDO3") & a["tty"].isin(["PT", "HT"])]
    codes_of: dict[str, set[str]] = defaultdict(set)  # concept -> its ICD-O codes
    names: dict[str, str] = {}  # ICD-O code -> preferred name
    for cui, code, tty, string in zip(
        icd["cui"], icd["code"], icd["tty"], icd["string"], strict=True
    ):
        codes_of[cui].add(code)
        if code not in names or tty == "PT":
            names[code] = string
    r = graph.relations
    par = r[r["rel"] == "PAR"]
    group_of: dict[str, str] = {}  # ICD-O code -> its ICD-O group (ICDO3 PAR)
    above: dict[str, set[str]] = defaultdict(set)  # concept -> parent concepts (NCI PAR)
    for head, tail, source in zip(par["head"], par["tail"], par["source"], strict=True):
        if source == "ICDO3":
            for child in codes_of.get(head, ()):
                for parent in codes_of.get(tail, ()):
                    group_of.setdefault(child, parent)
        else:
            above[head].add(tail)
    ancestors = _ancestor_codes(codes_of, above)  # ICD-O code -> ICD-O codes above it (NCI)

    out: dict[str, dict[str, str]] = {}
    if "subsite" in label_maps:
        members: dict[str, list[str]] = defaultdict(list)
        for code in names:
            if code.startswith("C") and len(code) == 5 and code[:3] in names:
                members[code[:3]].append(code)
        nos = {s: _site_nos(sorted(m), names) for s, m in members.items()}
        out["subsite"] = {u: nos[u[:3]] for u in label_maps["subsite"] if nos.get(u[:3])}
    if "histology" in label_maps:
        by_class: dict[str, str] = {}  # data code -> graph code, the malignant one first
        for code in sorted(group_of):
            key = _class_code("histology", code)
            if key not in by_class or code.endswith("/3"):
                by_class[key] = code
        groups: dict[str, list[str]] = defaultdict(list)
        for code, group in group_of.items():
            groups[group].append(code)
        group_nos = {g: _group_nos(m, ancestors, names) for g, m in groups.items()}
        h: dict[str, str] = {}
        for cls in label_maps["histology"]:
            code = by_class.get(cls, "")
            n = group_nos.get(group_of.get(code, ""), "")
            if n and (code == n or n in ancestors.get(code, ())):
                h[cls] = _class_code("histology", n)
        out["histology"] = h
    for task, m in out.items():
        log.info("%s: %d of %d classes back off to %d NOS codes",
                 task, len(m), len(label_maps[task]), len(set(m.values())))  # fmt: skip
    return Hierarchy(out, checksum)


def _ancestor_codes(
    codes_of: dict[str, set[str]], above: dict[str, set[str]]
) -> dict[str, set[str]]:
    """For every ICD-O code, the ICD-O codes of all concepts above its concept."""
    memo: dict[str, set[str]] = {}

    def up(cui: str, seen: frozenset[str]) -> set[str]:
        if cui in memo:
            return memo[cui]
        found: set[str] = set()
        for p in above.get(cui, ()):
            if p not in seen:
                found |= codes_of.get(p, set()) | up(p, seen | {p})
        memo[cui] = found
        return found

    out: dict[str, set[str]] = defaultdict(set)
    for cui, codes in codes_of.items():
        anc = up(cui, frozenset({cui}))
        for c in codes:
            out[c] |= anc - {c}
    return out


def _site_nos(members: list[str], names: dict[str, str]) -> str:
    """The ``.9`` code (C16.9 ``Stomach, NOS``), else the NOS-named one (C14.0 ``Pharynx, NOS``)."""
    nines = [m for m in members if m.endswith(".9")]
    named = [m for m in members if _is_nos(names.get(m, ""))]
    return (nines or named or [""])[0]


def _group_nos(members: list[str], ancestors: dict[str, set[str]], names: dict[str, str]) -> str:
    """The NOS member placed above the most other members (ties: the lowest code)."""
    named = [m for m in members if _is_nos(names.get(m, ""))]
    if not named:
        return ""
    below = {n: sum(n in ancestors.get(m, ()) for m in members) for n in named}
    return min(named, key=lambda n: (-below[n], n))
