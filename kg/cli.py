"""``kinpath kg ...``: build a graph, show its counts, link a corpus, embed the graph.

Each function is one subcommand; its typed signature is the command's options
(and the keys of a ``-c config.yaml``). Results go to stdout as JSON, progress
and warnings to stderr.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

from kinpath.common import InputError
from kinpath.kg.graph import build_graph, load_graph
from kinpath.kg.kge import train_kge
from kinpath.kg.link import ApproximateLinker, PhraseIndex, count_vocabulary, link_vocabulary
from kinpath.kg.normalize import words
from kinpath.kg.pairs import DEFAULT_RELATION_WEIGHTS, PairConfig, connected_pairs
from kinpath.kg.reports import read_texts
from kinpath.kg.umls import RrfFilters

log = logging.getLogger(__name__)


def _emit(obj: object) -> None:
    print(json.dumps(obj, indent=2))


def build(
    out: Path | None = None,
    umls: Path | None = None,
    obo: Path | None = None,
    languages: list[str] | None = ["ENG"],  # noqa: B006 (jsonargparse reads the default)
    sources: list[str] | None = None,
    term_types: list[str] | None = None,
    relations: list[str] | None = None,
    relation_attributes: list[str] | None = None,
    keep_suppressed: bool = False,
    on_error: Literal["raise", "skip"] = "raise",
) -> None:
    """Build a knowledge-graph folder from a UMLS META/ folder and/or an OBO file.

    Args:
        out: The graph folder to write (required).
        umls: A UMLS META/ folder (MRCONSO.RRF; MRREL, MRSTY, MRDEF when present).
        obo: An OBO ontology file.
        languages: MRCONSO LAT values to keep (null keeps all).
        sources: SAB values to keep (null keeps all).
        term_types: TTY values to keep (null keeps all).
        relations: MRREL REL values to keep (null keeps all).
        relation_attributes: MRREL RELA values to keep (null keeps all).
        keep_suppressed: Keep rows whose SUPPRESS flag is O, E or Y.
        on_error: On a malformed row, stop (raise) or count it and go on (skip).
    """

    if out is None:
        raise InputError("--out is required: the graph folder to write")

    def tup(x: list[str] | None) -> tuple[str, ...] | None:
        return None if x is None else tuple(x)

    filters = RrfFilters(
        languages=tup(languages),
        sources=tup(sources),
        term_types=tup(term_types),
        relations=tup(relations),
        relation_attributes=tup(relation_attributes),
        keep_suppressed=keep_suppressed,
    )
    res = build_graph(
        out,
        umls_dirs=[umls] if umls else [],
        obo_files=[obo] if obo else [],
        filters=filters,
        on_error=on_error,
    )
    _emit({"out": str(res.out), **res.counts, "skipped_rows_by_file": res.skipped})


def stats(graph: Path) -> None:
    """Print a graph folder's counts as JSON.

    Args:
        graph: A graph folder written by `kinpath kg build`.
    """
    g = load_graph(graph)
    m = g.manifest
    _emit(
        {
            **m["counts"],
            "checksum": m["checksum"],
            "sources": [
                {"kind": s["kind"], "path": s["path"], **s["counts"]} for s in m["sources"]
            ],
            "relation_types": g.relations["rel"].value_counts().to_dict(),
        }
    )


def link(
    graph: Path,
    out: Path | None = None,
    corpus: Path | None = None,
    vocabulary: Path | None = None,
    id_column: str = "report_id",
    text_column: str = "text",
    split: str | None = None,
    split_column: str = "split",
    approximate: bool = False,
    threshold: float = 0.85,
    max_hops: int = 1,
    relation_weights: dict[str, float] | None = None,
    synonym_weight: float = 1.0,
) -> None:
    """Link a corpus (or a vocabulary file) to the graph and write linked terms and pairs.

    Args:
        graph: A graph folder.
        out: Folder for links.parquet, pairs.parquet, linked_phrases.tsv and summary.json
            (required).
        corpus: A report table (csv, parquet, jsonl, or a folder of .txt files).
        vocabulary: Instead of a corpus: a text file, one token (and optionally a count) a line.
        id_column: The corpus's id column.
        text_column: The corpus's text column.
        split: Keep only rows whose split column has this value (e.g. train).
        split_column: The split column.
        approximate: Also link by character 3-gram TF-IDF nearest term.
        threshold: Least cosine similarity of an approximate link.
        max_hops: Longest relation path between two connected terms.
        relation_weights: Weight per REL type (default: SY 1, RL .8, PAR/CHD .5, RB/RN .4, RO/RQ .25).
        synonym_weight: Weight of two tokens naming the same concept.
    """
    if out is None:
        raise InputError("--out is required: the folder for links and pairs")
    if (corpus is None) == (vocabulary is None):
        raise InputError("give exactly one of --corpus and --vocabulary")
    g = load_graph(graph)
    vocab: dict[str, int]
    if corpus is not None:
        phrases = PhraseIndex.from_graph(g)
        where = {split_column: split} if split else None
        texts = read_texts(corpus, text_col=text_column, id_col=id_column, where=where)
        vocab = count_vocabulary(phrases.merge(words(t)) for t in texts)
    else:
        assert vocabulary is not None
        vocab = _read_vocabulary(vocabulary)
    linker = ApproximateLinker(g) if approximate else None
    links = link_vocabulary(vocab, g, linker, threshold=threshold)
    cfg = PairConfig(
        synonym_weight=synonym_weight,
        relation_weights=relation_weights or dict(DEFAULT_RELATION_WEIGHTS),
        max_hops=max_hops,
    )
    pairs = connected_pairs(links.by_token(), g, cfg)
    out.mkdir(parents=True, exist_ok=True)
    links.table.to_parquet(out / "links.parquet", index=False)
    pairs.to_parquet(out / "pairs.parquet", index=False)
    summary = {
        **links.summary(),
        "pairs": len(pairs),
        "pairs_by_relation": pairs["rel"].value_counts().to_dict(),
        "graph_checksum": g.checksum,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    # every linked phrase with its corpus count, most frequent first
    linked_phrases = sorted(
        {t for t in links.table["token"] if "_" in t}, key=lambda t: (-vocab.get(t, 0), t)
    )
    (out / "linked_phrases.tsv").write_text(
        "".join(f"{t}\t{vocab.get(t, 0)}\n" for t in linked_phrases)
    )
    _emit(
        {
            **summary,
            "top_linked_phrases": {t: vocab.get(t, 0) for t in linked_phrases[:40]},
            "out": str(out),
        }
    )


def _read_vocabulary(path: Path) -> dict[str, int]:
    vocab: dict[str, int] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if parts:
            vocab[parts[0]] = int(parts[1]) if len(parts) > 1 else 1
    return vocab


def embed(
    graph: Path,
    model: str = "TransE",
    embedding_dim: int = 64,
    epochs: int = 100,
    batch_size: int = 256,
    learning_rate: float = 0.01,
    seed: int = 42,
    out: Path | None = None,
) -> None:
    """Train a pykeen KG embedding (TransE, RotatE, ...) and print filtered MRR and Hits@10.

    Args:
        graph: A graph folder.
        model: A pykeen model name.
        embedding_dim: Embedding dimension.
        epochs: Training epochs.
        batch_size: Training batch size.
        learning_rate: Adam learning rate.
        seed: Random seed (split and initialization).
        out: Folder to save the trained model and its triples.
    """
    res = train_kge(
        load_graph(graph),
        model=model,
        embedding_dim=embedding_dim,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        out=out,
    )
    _emit(res.as_dict())


COMMANDS = {"build": build, "stats": stats, "link": link, "embed": embed}
