"""What the knowledge graph calls each class: the terms behind the label-knowledge heads.

Site, subsite and histology classes are ICD-O-3 codes. :func:`code_terms` reads
the graph's names for each code: the ``ICDO3`` atoms with that code (preferred
name, synonyms, related terms) and every other atom of the same concepts (NCI
Thesaurus names and synonyms). A site (``C34``) also takes the terms of its
subsites (``C34.1 Upper lobe, lung``, ``C34.9 Pulmonary, NOS``); a histology
class (``8140``) takes those of every behavior of the morphology (``8140/2``,
``8140/3``). Nothing here is a hand-written list: a graph built from another
UMLS release gives other terms.

:func:`nearby_codes` gives the codes a label-knowledge head adds as classes:
those within two ``PAR``/``CHD`` steps of a training code in the graph
(parents, children, siblings: 8520 lobular carcinoma beside a trained 8500
ductal carcinoma under 8140). On the TCGA training codes that is 70 sites,
224 subsites and 476 histologies of the NCI graph's 70 / 330 / 803, which
keeps the heads' cost down while covering every val/test code training lacks.
"""

from __future__ import annotations

import re
from collections import defaultdict

from kinpath.kg.graph import KnowledgeGraph

KNOWLEDGE_TASKS = ("site", "subsite", "histology")

_SITE = re.compile(r"^C\d\d$")
_SUBSITE = re.compile(r"^C\d\d\.\d$")
_MORPHOLOGY = re.compile(r"^\d{4}/\d$")


def code_terms(graph: KnowledgeGraph) -> dict[str, dict[str, list[str]]]:
    """Per knowledge task, per class code, the graph's terms for it (sorted, unique)."""
    a = graph.atoms
    strings: dict[str, set[str]] = defaultdict(set)  # concept -> all its names
    for cui, string in zip(a["cui"], a["string"], strict=True):
        strings[cui].add(string)
    icd = a[a["sab"] == "ICDO3"]
    out: dict[str, dict[str, set[str]]] = {t: defaultdict(set) for t in KNOWLEDGE_TASKS}
    for cui, code in zip(icd["cui"], icd["code"], strict=True):
        names = strings[cui]
        if _SITE.match(code):
            out["site"][code] |= names
        elif _SUBSITE.match(code):
            out["subsite"][code] |= names
            out["site"][code[:3]] |= names
        elif _MORPHOLOGY.match(code):
            out["histology"][code[:4]] |= names
    return {t: {c: sorted(v) for c, v in sorted(m.items())} for t, m in out.items()}


def nearby_codes(
    graph: KnowledgeGraph, known: set[str], trained: set[str], hops: int = 2
) -> set[str]:
    """The codes among ``known`` (a task's graph codes, :func:`code_terms`) within ``hops``
    PAR/CHD steps of a trained code; the trained codes included."""
    a = graph.atoms
    icd = a[a["sab"] == "ICDO3"]
    concepts: dict[str, set[str]] = defaultdict(set)  # class code -> concepts
    codes: dict[str, set[str]] = defaultdict(set)  # concept -> class codes
    for cui, code in zip(icd["cui"], icd["code"], strict=True):
        key = code[:4] if _MORPHOLOGY.match(code) else code
        concepts[key].add(cui)
        codes[cui].add(key)
    r = graph.relations
    steps = r[r["rel"].isin(["PAR", "CHD"])]
    near: dict[str, set[str]] = defaultdict(set)
    for head, tail in zip(steps["head"], steps["tail"], strict=True):
        near[head].add(tail)
        near[tail].add(head)
    seen = {c for k in trained for c in concepts.get(k, ())}
    front = set(seen)
    for _ in range(hops):
        front = {n for c in front for n in near[c]} - seen
        seen |= front
    return {k for c in seen for k in codes.get(c, ()) if k in known} | set(trained)
