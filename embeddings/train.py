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

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from gensim.models import KeyedVectors

from kinpath.common import InputError
from kinpath.embeddings.corpus import Corpus, build_corpus
from kinpath.embeddings.joint import JointConfig
from kinpath.embeddings.registry import TRAINERS, TrainInputs, trainer
from kinpath.embeddings.retrofit import RetrofitConfig
from kinpath.embeddings.store import save_embeddings
from kinpath.embeddings.tokenize import ReportTokenizer, TokenizerConfig
from kinpath.embeddings.word2vec import Word2VecConfig
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


@dataclass(frozen=True)
class Selection:
    """Which rows of the report tables train, and where their text and id are."""

    split: str | None = "train"  # None: every row
    split_column: str = "split"
    text_column: str = "text"
    id_column: str = "report_id"


@dataclass(frozen=True)
class TrainRequest:
    """Everything :func:`train_methods` needs besides the methods."""

    corpus: Path | list[Path]
    out: Path
    graph: Path | None = None
    seed: int = 42
    rows: Selection = Selection()
    word2vec: Word2VecConfig = Word2VecConfig()
    retrofit: RetrofitConfig = RetrofitConfig()
    joint: JointConfig = JointConfig()
    pairs: PairConfig = PairConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    collocations: bool = False
    heldout_fraction: float = 0.2


def train_methods(methods: list[str], r: TrainRequest, nested: bool = True) -> dict[str, Path]:
    """Tokenize once, derive the pairs once, train each method; returns method → folder.

    With ``nested`` each method's folder is ``r.out/METHOD``, else ``r.out`` itself
    (one method). retrofit starts from word2vec's vectors when word2vec ran first.
    """
    unknown = [m for m in methods if m not in TRAINERS]
    if unknown:
        raise InputError(f"unknown method(s) {unknown}; known: {sorted(TRAINERS)}")
    if r.graph is None and any(m != "word2vec" for m in methods):
        raise InputError("--graph is required for retrofit and kg-joint")
    rows = r.rows
    prep = prepare(
        r.corpus,
        r.out / "corpus",
        r.graph,
        r.seed,
        text_column=rows.text_column,
        id_column=rows.id_column,
        where={rows.split_column: rows.split} if rows.split else None,
        tokenizer=r.tokenizer,
        collocations=r.collocations,
        pairs=r.pairs,
        heldout_fraction=r.heldout_fraction,
        min_count=r.word2vec.min_count,
        graph_terms=r.retrofit.add_missing,
    )
    settings = {
        "corpus_split": rows.split,
        "tokenizer": asdict(r.tokenizer),
        "collocations": r.collocations,
        "pairs": {**asdict(r.pairs), "relation_weights": dict(r.pairs.relation_weights)},
        "heldout_fraction": r.heldout_fraction,
    }
    written: dict[str, Path] = {}
    base: KeyedVectors | None = None
    for m in methods:
        inputs = TrainInputs(prep.corpus, prep.pairs, r.seed, r.word2vec, r.retrofit, r.joint, base)
        dest = r.out / m if nested else r.out
        kv = train(m, prep, dest, inputs, settings)
        if m == "word2vec":
            base = kv  # retrofit starts from these rather than training word2vec again
        written[m] = dest
    return written
