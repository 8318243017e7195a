"""From reports and a graph to an embeddings folder: corpus, pairs, trainer, manifest.

:func:`prepare` does what every method shares (tokenize the corpus once, link
its vocabulary to the graph, compute connected pairs and withhold a share of
them for evaluation); :func:`train` runs one named method on it and writes the
folder (:mod:`kinpath.embeddings.store`).

Held-out pairs are drawn only among pairs whose two words will have vectors
(corpus count ≥ ``min_count``), so that each one can be evaluated; the trainers
never see them. Neighbour recall on them measures what the infusion
generalizes (a pair implied by others), not what it memorized.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from gensim.models import KeyedVectors

from kinpath.embeddings.corpus import Corpus, build_corpus
from kinpath.embeddings.registry import TrainInputs, trainer
from kinpath.embeddings.store import save_embeddings
from kinpath.embeddings.tokenize import ReportTokenizer, TokenizerConfig
from kinpath.kg.graph import load_graph
from kinpath.kg.link import link_vocabulary
from kinpath.kg.pairs import PAIR_COLUMNS, PairConfig, connected_pairs
from kinpath.kg.reports import Tables

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    corpus: Corpus
    tokenizer: ReportTokenizer
    pairs: pd.DataFrame
    heldout: pd.DataFrame
    graph_checksum: str | None
    links: dict[str, object]
    vocabulary: dict[str, int]


def prepare(
    reports: Tables,
    work: Path,
    graph: Path | None,
    seed: int,
    text_column: str = "text",
    id_column: str = "report_id",
    where: dict[str, str] | None = None,
    tokenizer: TokenizerConfig | None = None,
    collocations: bool = False,
    pairs: PairConfig | None = None,
    heldout_fraction: float = 0.2,
    min_count: int = 3,
    graph_terms: bool = False,
) -> Prepared:
    """Tokenize the corpus into ``work/`` and derive train and held-out pairs."""
    g = load_graph(graph) if graph else None
    tok = (
        ReportTokenizer.from_graph(g, tokenizer)
        if g is not None
        else ReportTokenizer((), tokenizer)
    )
    corpus, tok = build_corpus(
        reports,
        tok,
        work,
        text_col=text_column,
        id_col=id_column,
        where=where,
        collocations=collocations,
    )
    vocab = dict(corpus.vocabulary())
    if g is None:
        empty = pd.DataFrame(columns=PAIR_COLUMNS)
        return Prepared(corpus, tok, empty, empty, None, {}, vocab)
    to_link = dict(vocab)
    if graph_terms:  # give every graph term a chance at a vector (retrofit add_missing)
        for key in g.atoms["key"].drop_duplicates():
            to_link.setdefault(key, 0)
    links = link_vocabulary(to_link, g)
    all_pairs = connected_pairs(links.by_token(), g, pairs)
    known = {w for w, n in vocab.items() if n >= min_count}
    evaluable = all_pairs["a"].isin(known) & all_pairs["b"].isin(known)
    rng = np.random.default_rng(seed)
    held = evaluable.to_numpy() & (rng.random(len(all_pairs)) < heldout_fraction)
    summary = links.summary()
    summary.update(pairs=int((~held).sum()), heldout_pairs=int(held.sum()))
    log.info("pairs: %d for training, %d held out", (~held).sum(), held.sum())
    return Prepared(
        corpus,
        tok,
        all_pairs[~held].reset_index(drop=True),
        all_pairs[held].reset_index(drop=True),
        g.checksum,
        summary,
        vocab,
    )


def train(
    method: str,
    prep: Prepared,
    out: Path,
    inputs: TrainInputs,
    settings: Mapping[str, object],
) -> KeyedVectors:
    """Train ``method`` and write the embeddings folder ``out``."""
    kv = trainer(method)(inputs)
    manifest = {
        "kind": "kinpath.embeddings",
        "format": 1,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "method": method,
        "seed": inputs.seed,
        "settings": {
            **settings,
            "word2vec": asdict(inputs.word2vec),
            **({"retrofit": asdict(inputs.retrofit)} if method == "retrofit" else {}),
            **({"joint": asdict(inputs.joint)} if method == "kg-joint" else {}),
        },
        "corpus": {
            "checksum": prep.corpus.checksum,
            "reports": prep.corpus.reports,
            "sentences": prep.corpus.sentences,
            "tokens": prep.corpus.tokens,
        },
        "graph_checksum": prep.graph_checksum,
        "links": prep.links,
        "vocabulary_size": len(kv),
        "vector_size": kv.vector_size,
    }
    save_embeddings(out, kv, prep.tokenizer, manifest, prep.pairs, prep.heldout)
    log.info("%s: %d vectors written to %s", method, len(kv), out)
    return kv
