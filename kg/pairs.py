"""Weighted pairs of connected vocabulary terms, the knowledge the embeddings absorb.

Two vocabulary entries are connected when

* they name a shared concept (synonyms: ``idc`` and ``infiltrating_duct_carcinoma``), or
* their concepts are joined by a path of at most ``max_hops`` relations whose
  REL type has a weight (``PAR``/``CHD`` hierarchy, ``RL`` similar, ``RO`` other).

A path's weight is the product of its relation weights; a pair keeps the
heaviest path found, with its provenance (first relation, hops, the two
concepts). Relations are treated as undirected: ``PAR`` one way is ``CHD`` the
other. Concepts with more than ``max_degree`` relations (hubs such as
"Neoplasms, NOS") are not walked through, since they connect everything to
everything and would drown the specific links.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from kinpath.kg.graph import KnowledgeGraph

DEFAULT_RELATION_WEIGHTS: Mapping[str, float] = {
    "SY": 1.0,  # synonymy across sources (an OBO term's UMLS xref)
    "RL": 0.8,  # alike
    "PAR": 0.5,
    "CHD": 0.5,
    "RB": 0.4,
    "RN": 0.4,
    "RO": 0.25,
    "RQ": 0.25,
}

PAIR_COLUMNS = ["a", "b", "weight", "rel", "hops", "cui_a", "cui_b"]


@dataclass(frozen=True)
class PairConfig:
    synonym_weight: float = 1.0
    relation_weights: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_RELATION_WEIGHTS)
    )
    max_hops: int = 1
    max_degree: int = 200


def connected_pairs(
    links: Mapping[str, frozenset[str]], graph: KnowledgeGraph, config: PairConfig | None = None
) -> pd.DataFrame:
    """Pairs ``(a, b)`` with ``a < b`` of linked tokens, heaviest provenance each.

    ``links`` maps a vocabulary token to the concepts it names
    (:meth:`kinpath.kg.link.Links.by_token`).
    """
    cfg = config or PairConfig()
    tokens_of: dict[str, set[str]] = defaultdict(set)
    for tok, cuis in links.items():
        for c in cuis:
            tokens_of[c].add(tok)

    adj: dict[str, dict[str, tuple[float, str]]] = defaultdict(dict)
    rels = graph.relations[graph.relations["rel"].isin(list(cfg.relation_weights))]
    for h, r, t in zip(rels["head"], rels["rel"], rels["tail"], strict=True):
        w = cfg.relation_weights[r]
        for x, y in ((h, t), (t, h)):
            if w > adj[x].get(y, (0.0, ""))[0]:
                adj[x][y] = (w, r)

    best: dict[tuple[str, str], tuple[float, str, int, str, str]] = {}

    def offer(a: str, b: str, w: float, rel: str, hops: int, ca: str, cb: str) -> None:
        if a == b or w <= 0:
            return
        if a > b:
            a, b, ca, cb = b, a, cb, ca
        if w > best.get((a, b), (0.0,))[0]:
            best[(a, b)] = (w, rel, hops, ca, cb)

    for c, toks in tokens_of.items():
        ordered = sorted(toks)
        for i, a in enumerate(ordered):
            for b in ordered[i + 1 :]:
                offer(a, b, cfg.synonym_weight, "SY", 0, c, c)
        # best path weight to each concept within max_hops, and its first relation
        reached: dict[str, tuple[float, str, int]] = {c: (1.0, "", 0)}
        frontier = {c}
        for hop in range(1, cfg.max_hops + 1):
            nxt: set[str] = set()
            for x in frontier:
                if hop > 1 and len(adj[x]) > cfg.max_degree:
                    continue
                wx, first, _ = reached[x]
                for y, (w, r) in adj[x].items():
                    wy = wx * w
                    if wy > reached.get(y, (0.0,))[0]:
                        reached[y] = (wy, first or r, hop)
                        nxt.add(y)
            frontier = nxt
        for d, (w, rel, hops) in reached.items():
            if d == c or d not in tokens_of:
                continue
            for a in toks:
                for b in tokens_of[d]:
                    offer(a, b, w, rel, hops, c, d)

    rows = [(a, b, *v) for (a, b), v in sorted(best.items())]
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)
