"""Knowledge-graph embeddings with pykeen (TransE, RotatE, ...).

The graph's relations become (head, relation, tail) triples, with RELA as the
relation label where the source gives one and REL otherwise, each fact once
(see :func:`graph_triples`). They are split
into train / validation / test; the model is trained on train and evaluated
on test by rank-based link prediction in the *filtered* setting: when ranking
the true tail of a test triple, every other tail known to be true in train or
validation is removed from the candidates, so the model is not punished for
ranking a real fact above the held-out one. Reported: MRR (mean reciprocal rank)
and Hits@10, both sides (head and tail prediction) averaged.

pykeen keeps datasets and checkpoints under ``PYSTOW_HOME``; it is pointed at
``.cache/pykeen`` in the working directory unless the caller set it, so that
nothing is written to the home folder.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kinpath.kg.graph import KnowledgeGraph

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KgeResult:
    model: str
    triples: dict[str, int]
    mrr: float
    hits_at_10: float
    epochs: int
    embedding_dim: int
    seed: int

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


# REL types that are the inverse of another (the UMLS lists both directions)
_INVERSE = {"CHD": ("PAR", "inverse_isa"), "RN": ("RB", "")}
# REL types that hold both ways
_SYMMETRIC = {"RL", "RO", "RQ", "SY", "SIB"}


def graph_triples(graph: KnowledgeGraph) -> np.ndarray:
    """Distinct labelled triples (head, relation, tail) as an ``(n, 3)`` string array.

    Each fact is kept once: a UMLS release lists ``A PAR B`` and ``B CHD A``,
    and ``A RO B`` with ``B RO A``. Left in, the test split would hold the
    mirror image of training triples and the metrics would measure lookup, not
    generalization. CHD/RN rows are turned into their PAR/RB form and symmetric
    relations ordered, then duplicates dropped.
    """
    r = graph.relations
    head, rel, rela, tail = (r[c].to_numpy(str) for c in ("head", "rel", "rela", "tail"))
    head, rel, rela, tail = head.copy(), rel.copy(), rela.copy(), tail.copy()
    for inv, (fwd, fwd_rela) in _INVERSE.items():
        m = rel == inv
        head[m], tail[m] = tail[m], head[m].copy()
        rel[m] = fwd
        rela[m] = fwd_rela
    sym = np.isin(rel, list(_SYMMETRIC)) & (head > tail)
    head[sym], tail[sym] = tail[sym], head[sym].copy()
    label = np.where(rela != "", rela, rel)
    return np.unique(np.stack([head, label, tail], axis=1), axis=0)


def train_kge(
    graph: KnowledgeGraph,
    model: str = "TransE",
    embedding_dim: int = 64,
    epochs: int = 100,
    batch_size: int = 256,
    learning_rate: float = 0.01,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 42,
    cache_dir: Path = Path(".cache/pykeen"),
    device: str = "cpu",
    out: Path | None = None,
) -> KgeResult:
    """Train a pykeen model on the graph and evaluate filtered MRR and Hits@10."""
    os.environ.setdefault("PYSTOW_HOME", str(cache_dir.resolve()))
    os.environ.setdefault("PYKEEN_HOME", str(cache_dir.resolve()))
    from pykeen.pipeline import pipeline
    from pykeen.triples import TriplesFactory

    factory = TriplesFactory.from_labeled_triples(graph_triples(graph))
    train, valid, test = factory.split(list(split), random_state=seed)
    result = pipeline(
        training=train,
        validation=valid,
        testing=test,
        model=model,
        model_kwargs={"embedding_dim": embedding_dim},
        optimizer="Adam",
        optimizer_kwargs={"lr": learning_rate},
        training_kwargs={"num_epochs": epochs, "batch_size": batch_size, "use_tqdm_batch": False},
        evaluator_kwargs={"filtered": True},
        evaluation_kwargs={"additional_filter_triples": [valid.mapped_triples], "batch_size": 256},
        random_seed=seed,
        device=device,
    )
    mrr = float(result.metric_results.get_metric("both.realistic.inverse_harmonic_mean_rank"))
    hits = float(result.metric_results.get_metric("both.realistic.hits_at_10"))
    if out is not None:
        result.save_to_directory(str(out))
    res = KgeResult(
        model=model,
        triples={
            "train": train.num_triples,
            "validation": valid.num_triples,
            "test": test.num_triples,
        },
        mrr=mrr,
        hits_at_10=hits,
        epochs=epochs,
        embedding_dim=embedding_dim,
        seed=seed,
    )
    log.info("%s: filtered MRR %.4f, Hits@10 %.4f", model, mrr, hits)
    return res
