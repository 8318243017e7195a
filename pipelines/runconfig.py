"""What a ``kinpath run`` config holds, section by section (``data``, ``graph``,
``embeddings``, ``fit``, ``registry``): the dataclasses jsonargparse reads the YAML into."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from kinpath.embeddings.config import JointConfig, Word2VecConfig
from kinpath.kg.pairs import PairConfig


@dataclass(frozen=True)
class DataConfig:
    reports: str | list[str] | None = None  # a report table or a list of them; None: synthetic
    # valid site × histology pairs (SEER's table) for the edit checks; with synthetic reports,
    # None: the synthetic ontology's own
    valid_combinations: str | None = None
    synthetic_reports: int = 1000  # 150 validation reports: enough to bound 97% accuracy
    synthetic_seed: int = 0
    id_column: str = "report_id"
    text_column: str = "text"
    split_column: str = "split"


@dataclass(frozen=True)
class GraphConfig:
    umls: str | None = None  # a META/ folder; with obo None too: the synthetic mini graph
    obo: str | None = None


@dataclass(frozen=True)
class EmbeddingConfig:
    word2vec: Word2VecConfig = field(
        # one thread: the demo is small enough, and gensim's threads make every run differ
        default_factory=lambda: Word2VecConfig(vector_size=100, epochs=10, min_count=2, workers=1)
    )
    joint: JointConfig = field(default_factory=JointConfig)
    pairs: PairConfig = field(default_factory=PairConfig)
    heldout_fraction: float = 0.2


@dataclass(frozen=True)
class FitConfig:
    config: str | None = None  # a `lightning fit` YAML; None: the module's defaults
    # `lightning fit` options over the config, by their dotted names (trainer.max_epochs: 8)
    overrides: dict[str, Any] = field(default_factory=lambda: {
        "trainer.max_epochs": 8, "trainer.enable_progress_bar": False,
    })  # fmt: skip
    inits: list[str] = field(default_factory=lambda: ["random", "word2vec", "kg-joint"])
    heads: list[str] = field(default_factory=lambda: ["plain"])  # and/or label-knowledge
    seeds: list[int] = field(default_factory=list)  # empty: the run's one seed
    # extra seeds for some methods only ("<init> / <heads>": [seeds]), for the comparisons
    # that need a spread without paying for every method's
    more_seeds: dict[str, list[int]] = field(default_factory=dict)
    # `lightning fit` options for the fits of one kind of heads, over `overrides` (heads that
    # learn at another pace: {label-knowledge: {trainer.max_epochs: 4}})
    heads_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def overrides_for(self, heads: str) -> dict[str, Any]:
        """The options a fit with these heads runs with: ``overrides``, then its heads'."""
        return self.overrides | self.heads_overrides.get(heads, {})


@dataclass(frozen=True)
class RegistryConfig:
    model_name: str = "kinpath-demo"
    alias: str = "champion"
    # which fit is registered and promoted: "best" (lowest mean validation loss over seeds,
    # then that config's best seed), an initialization ("kg-joint": its first heads),
    # "<init> / <heads>", or "distilled" (with ensemble: the best ensemble distilled into one
    # network, registered when its validation macro-F1 is within the ensemble's seed spread on
    # every task, else the ensemble: one network's cost a report where it holds up)
    champion: str = "best"
    # register a method's seeds as one model, their class probabilities averaged
    # (pipelines.ensemble): with champion "best", every method fitted with two seeds or more
    # is built and the ensemble of the lowest validation loss registered; with a named
    # champion, its ensemble (a method with one seed: that fit). On TCGA three seeds' ensemble
    # beats every single fit on site and histology, at three networks' cost per report
    # (docs/results/tcga.md)
    ensemble: bool = False
    # `lightning fit` options for the distillation's fit alone, over its heads' (a student
    # taught by soft targets may need longer than its heads' own fits: {trainer.max_epochs: 8})
    distill_overrides: dict[str, Any] = field(default_factory=dict)
    # where the distillation's student starts: "fresh" weights, or "best-member", the
    # ensemble's member of the lowest validation loss (model.teacher_init; on TCGA it came
    # closest: docs/results/distilled-teacher-init.md)
    distill_start: Literal["fresh", "best-member"] = "fresh"
