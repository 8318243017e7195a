"""Linking a corpus vocabulary to knowledge-graph concepts.

Two steps meet here. :class:`PhraseIndex` merges the multi-word terms of a
graph into phrase tokens in a token stream (``squamous cell carcinoma`` →
``squamous_cell_carcinoma``), greedily taking the longest term that starts at
each position; the report tokenizer uses the same index. :func:`link_vocabulary`
then maps each vocabulary entry to the concepts whose normalized term it is
(exact match) and, optionally, through :class:`ApproximateLinker`, to the
nearest term by character 3-gram TF-IDF cosine: the recipe of scispacy's
candidate generator (``char_wb`` 3-grams, an HNSW index over sparse cosine),
rebuilt here because scispacy's own index builder fails with the installed
scipy. Approximate links catch OCR damage and spelling variants
(``carcinorna``), and are kept only above a score threshold.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kinpath.kg.graph import KnowledgeGraph
from kinpath.kg.normalize import PHRASE_JOINER

log = logging.getLogger(__name__)
logging.getLogger("nmslib").setLevel(logging.WARNING)


class PhraseIndex:
    """Greedy longest-match merging of known multi-word terms."""

    def __init__(self, phrases: Iterable[Sequence[str]], max_words: int = 6):
        self._by_first: dict[str, set[tuple[str, ...]]] = {}
        self._lengths: dict[str, list[int]] = {}
        for p in phrases:
            p = tuple(p)
            if 2 <= len(p) <= max_words:
                self._by_first.setdefault(p[0], set()).add(p)
        for first, ps in self._by_first.items():
            self._lengths[first] = sorted({len(p) for p in ps}, reverse=True)

    @classmethod
    def from_graph(cls, graph: KnowledgeGraph, max_words: int = 6) -> PhraseIndex:
        keys = graph.atoms["key"].drop_duplicates()
        return cls((k.split(PHRASE_JOINER) for k in keys if PHRASE_JOINER in k), max_words)

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_first.values())

    def merge(self, tokens: Sequence[str]) -> list[str]:
        """Tokens with each known phrase joined into one token."""
        out: list[str] = []
        i, n = 0, len(tokens)
        while i < n:
            for length in self._lengths.get(tokens[i], ()):
                if i + length <= n and tuple(tokens[i : i + length]) in self._by_first[tokens[i]]:
                    out.append(PHRASE_JOINER.join(tokens[i : i + length]))
                    i += length
                    break
            else:
                out.append(tokens[i])
                i += 1
        return out


class ApproximateLinker:
    """Nearest graph term by character 3-gram TF-IDF cosine (scispacy's recipe)."""

    def __init__(self, graph: KnowledgeGraph, min_df: int = 1, ef_search: int = 200):
        import nmslib
        from sklearn.feature_extraction.text import TfidfVectorizer

        self._terms = graph.terms()
        self._keys = sorted(self._terms)
        self._vectorizer = TfidfVectorizer(
            analyzer="char_wb", ngram_range=(3, 3), min_df=min_df, dtype=np.float32
        )
        matrix = self._vectorizer.fit_transform([k.replace(PHRASE_JOINER, " ") for k in self._keys])
        self._index = nmslib.init(
            method="hnsw", space="cosinesimil_sparse", data_type=nmslib.DataType.SPARSE_VECTOR
        )
        self._index.addDataPointBatch(matrix)
        self._index.createIndex({"M": 30, "efConstruction": 200, "post": 0}, print_progress=False)
        self._index.setQueryTimeParams({"efSearch": ef_search})

    def nearest(self, tokens: Sequence[str], k: int = 10) -> list[tuple[str, float]]:
        """For each token, the closest term key of as many words, and its cosine similarity.

        A spelling variant has the words of its term (``carcinorna`` ~
        ``carcinoma``); a single word close to a longer term in 3-grams
        (``squamous`` ~ ``squamous_carcinoma``) is a different thing, so only
        candidates with the same number of words count.
        """
        if not tokens:
            return []
        q = self._vectorizer.transform([t.replace(PHRASE_JOINER, " ") for t in tokens])
        out = []
        for token, (ids, dist) in zip(tokens, self._index.knnQueryBatch(q, k=k), strict=True):
            n = token.count(PHRASE_JOINER)
            best = ("", 0.0)
            for i, d in zip(ids, dist, strict=True):
                key = self._keys[i]
                if key.count(PHRASE_JOINER) == n and 1 - d > best[1]:
                    best = (key, float(1 - d))
            out.append(best)
        return out

    def concepts(self, key: str) -> frozenset[str]:
        return self._terms.get(key, frozenset())


@dataclass(frozen=True)
class Links:
    """Linked vocabulary: one row per (token, concept) with how it was found."""

    table: pd.DataFrame  # token, cui, method ("exact" | "approximate"), score, term
    vocabulary_size: int
    corpus_tokens: int
    linked_corpus_tokens: int

    def by_token(self) -> dict[str, frozenset[str]]:
        return {t: frozenset(g) for t, g in self.table.groupby("token")["cui"]}

    def summary(self) -> dict[str, object]:
        tokens = self.table["token"].drop_duplicates()
        phrases = tokens[tokens.str.contains(PHRASE_JOINER, regex=False)]
        return {
            "vocabulary": self.vocabulary_size,
            "linked_vocabulary": int(tokens.size),
            "linked_phrases": int(phrases.size),
            "exact": int((self.table.drop_duplicates("token")["method"] == "exact").sum()),
            "approximate": int(
                (self.table.drop_duplicates("token")["method"] == "approximate").sum()
            ),
            "corpus_tokens": self.corpus_tokens,
            "linked_corpus_tokens": self.linked_corpus_tokens,
            "concepts": int(self.table["cui"].nunique()),
        }


def link_vocabulary(
    vocabulary: Mapping[str, int],
    graph: KnowledgeGraph,
    approximate: ApproximateLinker | None = None,
    threshold: float = 0.85,
    min_length: int = 4,
) -> Links:
    """Link vocabulary entries (token → corpus count) to concepts.

    Exact: the token is a normalized term key of the graph. Approximate (if a
    linker is given): tokens of at least ``min_length`` letters with no exact
    link, whose nearest term scores at least ``threshold``; placeholder tokens
    (``<num>``) never link.
    """
    terms = graph.terms()
    rows: list[tuple[str, str, str, float, str]] = []
    unlinked: list[str] = []
    for token in vocabulary:
        cuis = terms.get(token)
        if cuis:
            rows.extend((token, c, "exact", 1.0, token) for c in sorted(cuis))
        elif len(token) >= min_length and not token.startswith("<") and not token.isdigit():
            unlinked.append(token)
    if approximate is not None and unlinked:
        for token, (key, score) in zip(unlinked, approximate.nearest(unlinked), strict=True):
            if score >= threshold:
                rows.extend(
                    (token, c, "approximate", score, key) for c in sorted(approximate.concepts(key))
                )
    table = pd.DataFrame(rows, columns=["token", "cui", "method", "score", "term"])
    linked = set(table["token"])
    total = sum(vocabulary.values())
    hit = sum(n for t, n in vocabulary.items() if t in linked)
    log.info("linked %d of %d vocabulary entries", len(linked), len(vocabulary))
    return Links(table, len(vocabulary), total, hit)


def count_vocabulary(token_lists: Iterable[Sequence[str]]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for tokens in token_lists:
        counts.update(tokens)
    return counts
