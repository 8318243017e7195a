"""``kinpath embed ...``: train knowledge-infused vectors, compare methods, evaluate.

``train`` writes one embeddings folder; ``compare`` tokenizes once, trains each
named method on the same corpus and pairs, and prints the evaluation table;
``evaluate`` scores existing folders. Options are the functions' typed
parameters (``-c configs/embeddings.yaml`` holds the same keys).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

from gensim.models import KeyedVectors

from kinpath.embeddings.evaluate import heldout_recall, neighbour_table, plot_neighbourhoods, umnsrs
from kinpath.embeddings.joint import JointConfig
from kinpath.embeddings.registry import TRAINERS, Method, TrainInputs
from kinpath.embeddings.retrofit import RetrofitConfig
from kinpath.embeddings.store import load_embeddings
from kinpath.embeddings.tokenize import TokenizerConfig
from kinpath.embeddings.train import prepare, train
from kinpath.embeddings.word2vec import Word2VecConfig
from kinpath.kg.errors import InputError
from kinpath.kg.graph import load_graph
from kinpath.kg.link import link_vocabulary
from kinpath.kg.pairs import PairConfig

log = logging.getLogger(__name__)

SITE_TYPE = "Body Part, Organ, or Organ Component"
HISTOLOGY_TYPE = "Neoplastic Process"


def train_methods(
    methods: list[str],
    corpus: Path | list[Path],
    graph: Path | None,
    out: Path,
    nested: bool,
    seed: int,
    split: str | None,
    split_column: str,
    text_column: str,
    id_column: str,
    word2vec: Word2VecConfig,
    retrofit: RetrofitConfig,
    joint: JointConfig,
    pairs: PairConfig,
    tokenizer: TokenizerConfig,
    collocations: bool,
    heldout_fraction: float,
) -> dict[str, Path]:
    """Tokenize once, derive the pairs once, train each method; returns method → folder.

    With ``nested`` each method's folder is ``out/METHOD``, else ``out`` itself
    (one method). retrofit starts from word2vec's vectors when word2vec ran first.
    """
    unknown = [m for m in methods if m not in TRAINERS]
    if unknown:
        raise InputError(f"unknown method(s) {unknown}; known: {sorted(TRAINERS)}")
    if graph is None and any(m != "word2vec" for m in methods):
        raise InputError("--graph is required for retrofit and kg-joint")
    prep = prepare(
        corpus,
        out / "corpus",
        graph,
        seed,
        text_column=text_column,
        id_column=id_column,
        where={split_column: split} if split else None,
        tokenizer=tokenizer,
        collocations=collocations,
        pairs=pairs,
        heldout_fraction=heldout_fraction,
        min_count=word2vec.min_count,
        graph_terms=retrofit.add_missing,
    )
    settings = {
        "corpus_split": split,
        "tokenizer": asdict(tokenizer),
        "collocations": collocations,
        "pairs": {**asdict(pairs), "relation_weights": dict(pairs.relation_weights)},
        "heldout_fraction": heldout_fraction,
    }
    written: dict[str, Path] = {}
    base: KeyedVectors | None = None
    for m in methods:
        inputs = TrainInputs(prep.corpus, prep.pairs, seed, word2vec, retrofit, joint, base)
        dest = out / m if nested else out
        kv = train(m, prep, dest, inputs, settings)
        if m == "word2vec":
            base = kv  # retrofit starts from these rather than training word2vec again
        written[m] = dest
    return written


def _require(**options: object) -> None:
    missing = [f"--{k}" for k, v in options.items() if v is None]
    if missing:
        raise InputError(f"missing required option(s): {', '.join(missing)}")


def train_cmd(
    corpus: Path | list[Path] | None = None,
    out: Path | None = None,
    method: Method = "kg-joint",
    graph: Path | None = None,
    seed: int = 42,
    split: str | None = "train",
    split_column: str = "split",
    text_column: str = "text",
    id_column: str = "report_id",
    word2vec: Word2VecConfig = Word2VecConfig(),
    retrofit: RetrofitConfig = RetrofitConfig(),
    joint: JointConfig = JointConfig(),
    pairs: PairConfig = PairConfig(),
    tokenizer: TokenizerConfig = TokenizerConfig(),
    collocations: bool = False,
    heldout_fraction: float = 0.2,
) -> None:
    """Train one embedding method and write its folder.

    Args:
        corpus: Report table (csv, parquet, jsonl, or a folder of .txt files), or a list of
            tables read as one; required.
        out: The embeddings folder to write; required.
        method: word2vec, retrofit or kg-joint.
        graph: Graph folder from `kinpath kg build` (needed by retrofit and kg-joint).
        seed: The one seed for everything random here.
        split: Train on rows whose split column has this value (null: all rows).
        split_column: The split column.
        text_column: The report text column.
        id_column: The report id column.
        word2vec: word2vec settings (all methods).
        retrofit: Retrofitting settings.
        joint: kg-joint settings (lam: λ; steps_per_epoch: regularizer steps per epoch).
        pairs: How graph relations become weighted pairs.
        tokenizer: Tokenizer settings.
        collocations: Also join frequent collocations (gensim Phrases).
        heldout_fraction: Share of evaluable pairs withheld from training for evaluation.
    """
    _require(corpus=corpus, out=out)
    assert corpus is not None and out is not None
    train_methods(
        [method], corpus, graph, out, False, seed, split, split_column, text_column, id_column,
        word2vec, retrofit, joint, pairs, tokenizer, collocations, heldout_fraction,
    )  # fmt: skip
    print(json.dumps(load_embeddings(out).manifest, indent=2))


def compare(
    corpus: Path | list[Path] | None = None,
    graph: Path | None = None,
    out: Path | None = None,
    methods: list[str] = ["word2vec", "retrofit", "kg-joint"],  # noqa: B006
    umnsrs_dir: Path | None = None,
    seed: int = 42,
    split: str | None = "train",
    split_column: str = "split",
    text_column: str = "text",
    id_column: str = "report_id",
    word2vec: Word2VecConfig = Word2VecConfig(),
    retrofit: RetrofitConfig = RetrofitConfig(),
    joint: JointConfig = JointConfig(),
    pairs: PairConfig = PairConfig(),
    tokenizer: TokenizerConfig = TokenizerConfig(),
    collocations: bool = False,
    heldout_fraction: float = 0.2,
    k: int = 10,
) -> None:
    """Train several methods on one corpus and the same pairs, then evaluate them side by side.

    Args:
        corpus: Report table, or a list of tables read as one; required.
        graph: Graph folder; required.
        out: Folder; each method's embeddings go to out/METHOD; required.
        methods: Methods to train, in order (retrofit reuses word2vec's vectors if listed first).
        umnsrs_dir: Folder with UMNSRS_similarity.csv and UMNSRS_relatedness.csv.
        seed: The one seed for everything random here.
        split: Train on rows whose split column has this value (null: all rows).
        split_column: The split column.
        text_column: The report text column.
        id_column: The report id column.
        word2vec: word2vec settings (all methods).
        retrofit: Retrofitting settings.
        joint: kg-joint settings.
        pairs: How graph relations become weighted pairs.
        tokenizer: Tokenizer settings.
        collocations: Also join frequent collocations (gensim Phrases).
        heldout_fraction: Share of evaluable pairs withheld from training.
        k: Neighbours for held-out recall@k.
    """
    _require(corpus=corpus, graph=graph, out=out)
    assert corpus is not None and graph is not None and out is not None
    written = train_methods(
        methods, corpus, graph, out, True, seed, split, split_column, text_column, id_column,
        word2vec, retrofit, joint, pairs, tokenizer, collocations, heldout_fraction,
    )  # fmt: skip
    evaluate(list(written.values()), graph=graph, umnsrs_dir=umnsrs_dir, out=out, k=k)


def evaluate(
    vectors: list[Path],
    graph: Path | None = None,
    umnsrs_dir: Path | None = None,
    out: Path | None = None,
    k: int = 10,
) -> None:
    """Score embeddings folders: held-out KG recall@k, UMNSRS, neighbours, a plot; print the table.

    Args:
        vectors: Embeddings folders; the first is the baseline of the plot. The held-out pairs
            of the first folder are used for all, so the figures compare.
        graph: Graph folder, for the site/histology plot.
        umnsrs_dir: Folder with UMNSRS_similarity.csv and UMNSRS_relatedness.csv.
        out: Where to write evaluation.json, neighbours.md and neighbourhoods.png.
        k: Neighbours for recall@k.
    """
    _print_table(evaluation(vectors, graph, umnsrs_dir, out, k))


def evaluation(
    vectors: list[Path],
    graph: Path | None = None,
    umnsrs_dir: Path | None = None,
    out: Path | None = None,
    k: int = 10,
) -> list[dict[str, object]]:
    """What :func:`evaluate` prints, as rows (one per method), written to ``out`` too."""
    folders = [load_embeddings(v) for v in vectors]
    heldout = folders[0].pairs(held_out=True)
    sets: dict[str, KeyedVectors] = {}
    for f in folders:  # label by method; the folder's name tells two of one method apart
        name = f.manifest["method"]
        sets[f"{name} ({f.path.name})" if name in sets else name] = f.vectors
    rows = []
    for name, kv in sets.items():
        recall, n = heldout_recall(kv, heldout, k)
        row: dict[str, object] = {
            "method": name,
            f"heldout_recall@{k}": round(recall, 4),
            "heldout_pairs": n,
        }
        if umnsrs_dir is not None:
            for which in ("similarity", "relatedness"):
                s = umnsrs(kv, umnsrs_dir / f"UMNSRS_{which}.csv")
                row[f"umnsrs_{which}_spearman"] = round(s.spearman, 4)
                row[f"umnsrs_{which}_coverage"] = f"{s.covered}/{s.total}"
        rows.append(row)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "evaluation.json").write_text(json.dumps(rows, indent=2) + "\n")
        (out / "neighbours.md").write_text(neighbour_table(sets))
        if graph is not None:
            groups = _site_histology_groups(folders[0].vectors, graph)
            plot_neighbourhoods(sets, groups, out / "neighbourhoods.png")
        log.info("evaluation written to %s", out)
    return rows


def _site_histology_groups(kv: KeyedVectors, graph: Path) -> dict[str, list[str]]:
    g = load_graph(graph)
    links = link_vocabulary({w: 1 for w in kv.index_to_key}, g).by_token()
    types = g.concepts["semantic_types"]
    groups: dict[str, list[str]] = {"site": [], "histology": []}
    for tok, cuis in links.items():
        ts = {t for c in cuis for t in str(types.get(c, "")).split("|")}
        if SITE_TYPE in ts:
            groups["site"].append(tok)
        elif HISTOLOGY_TYPE in ts:
            groups["histology"].append(tok)
    return groups


def _print_table(rows: list[dict[str, object]]) -> None:
    cols = list(rows[0])
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(cols, widths, strict=True)))


COMMANDS = {"train": train_cmd, "compare": compare, "evaluate": evaluate}
