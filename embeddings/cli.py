"""``kinpath embed ...``: train knowledge-infused vectors, compare methods, evaluate.

``train`` writes one embeddings folder; ``compare`` tokenizes once, trains each
named method on the same corpus and pairs, and prints the evaluation table;
``evaluate`` scores existing folders. Options are the functions' typed
parameters (``-c configs/embeddings.yaml`` holds the same keys).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from kinpath.common import InputError
from kinpath.embeddings.evaluate import evaluation
from kinpath.embeddings.joint import JointConfig
from kinpath.embeddings.registry import Method
from kinpath.embeddings.retrofit import RetrofitConfig
from kinpath.embeddings.store import load_embeddings
from kinpath.embeddings.tokenize import TokenizerConfig
from kinpath.embeddings.train import Selection, TrainRequest, train_methods
from kinpath.embeddings.word2vec import Word2VecConfig
from kinpath.kg.pairs import PairConfig

log = logging.getLogger(__name__)


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
    request = TrainRequest(corpus, out, graph, seed, Selection(split, split_column, text_column,
                           id_column), word2vec, retrofit, joint, pairs, tokenizer, collocations,
                           heldout_fraction)  # fmt: skip
    train_methods([method], request, nested=False)
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
    request = TrainRequest(corpus, out, graph, seed, Selection(split, split_column, text_column,
                           id_column), word2vec, retrofit, joint, pairs, tokenizer, collocations,
                           heldout_fraction)  # fmt: skip
    written = train_methods(methods, request)
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


def _print_table(rows: list[dict[str, object]]) -> None:
    cols = list(rows[0])
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(cols, widths, strict=True)))


COMMANDS = {"train": train_cmd, "compare": compare, "evaluate": evaluate}
