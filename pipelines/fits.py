"""The fits of ``kinpath run`` and how the champion is chosen among them: one MT-CNN fit per
initialization × heads × seed (LightningCLI, one MLflow run each), seed ensembles of the
methods fitted with several seeds, and the champion (the lowest validation loss, or a named
method)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kinpath.pipelines.runconfig import DataConfig, FitConfig, RegistryConfig
from kinpath.pipelines.stages import Stages, run_exists

log = logging.getLogger(__name__)


TABLE_LEGEND = (
    "Each task's cell: micro-F1 / macro-F1 / share auto-coded, on the test split (all test "
    "splits pooled; mean over seeds, ± their standard deviation); rare codes: macro-F1 over "
    "the codes with fewer than 10 training reports. The report has the tables per split."
)


def champion_reason(choice: str) -> str:
    """Why the registered method is the one registered, in words."""
    if choice == "best":
        return "the lowest mean validation loss, registry.champion: best"
    return f"named in the config, registry.champion: {choice}"


def method_name(init: str, heads: str) -> str:
    """A method's row in the results: ``mtcnn <init> / <heads>``."""
    return f"mtcnn {init} / {heads}"


def named_method(name: str, fit: FitConfig) -> str:
    """The row of ``"<init> / <heads>"`` or of ``"<init>"`` (its first heads)."""
    init, _, heads = (x.strip() for x in name.partition("/"))
    return method_name(init, heads or fit.heads[0])


def champion_of(choice: str, fit: FitConfig, fits: dict[str, list[dict]]) -> tuple[str, dict]:
    """The registered method and fit: the named one's best seed, or with ``best`` the method
    of the lowest mean validation loss (the checkpoints' criterion) and its best seed."""

    def loss(r: dict) -> float:
        return float(r.get("val_loss", float("inf")))

    if choice == "best":
        name = min(fits, key=lambda n: sum(map(loss, fits[n])) / len(fits[n]))
    else:
        name = named_method(choice, fit)
    return name, min(fits[name], key=loss)


@dataclass
class Ensembles:
    """What :func:`ensembles` built: a results row and its seeds per ensemble, and the
    champion (the ensemble of the lowest validation loss, or the fit it had)."""

    champion: str
    champion_fit: dict
    rows: dict[str, dict[str, float]]
    seeds: dict[str, list[int]]


def ensembles(
    st: Stages, registry: RegistryConfig, fits: dict[str, list[dict]], chosen: tuple[str, dict],
    tracking_uri: str,
) -> Ensembles:  # fmt: skip
    """One ensemble stage per method fitted with two seeds or more (with ``champion: best``;
    else the named champion's only), each a row of the results; the champion becomes the
    ensemble of the lowest validation loss (the ensemble's own, over the whole split)."""
    from kinpath.pipelines.ensemble import ensemble

    champion, champion_fit = chosen
    names = [n for n, rs in fits.items() if len(rs) >= 2]
    if registry.champion != "best":
        names = [n for n in names if n == champion]
    if not names:
        log.warning("registry.ensemble: no champion candidate has two seeds; registering %s, "
                    "seed %s", champion, champion_fit["seed"])  # fmt: skip
        return Ensembles(champion, champion_fit, {}, {})

    def stage(members: list[str]) -> Callable[[Path], dict]:
        return lambda folder: ensemble(members, tracking_uri)

    built = {}
    for name in names:
        members = [r["run_id"] for r in fits[name]]
        slug = fits[name][0]["stage"].rsplit("-", 1)[0].replace("fit-", "ensemble-", 1)
        built[name] = st.run(
            slug, {"members": members, "tracking": tracking_uri},
            ["data", *(r["stage"] for r in fits[name])], stage(members),
            exists=lambda out: run_exists(out["run_id"]),
        )  # fmt: skip
    best = min(built, key=lambda n: built[n]["val_loss"])
    e = built[best]
    return Ensembles(
        f"{best} ensemble",
        {
            "run_id": e["run_id"],
            "metrics": e["metrics"],
            "val_loss": e["val_loss"],
            "seed": e["seeds"],
        },
        {f"{n} ensemble": b["metrics"] for n, b in built.items()},
        {f"{n} ensemble": b["seeds"] for n, b in built.items()},
    )


@dataclass(frozen=True)
class FitInputs:
    """What every fit of a run shares: the config, the tables, the embeddings folders by
    method, the graph folder and the valid site × histology table."""

    fit: FitConfig
    data: DataConfig
    reports: list[Path]
    embeddings: dict[str, str]
    graph: str
    valid: str | None


def fit_stage(init: str, heads: str, seed: int, x: FitInputs) -> Callable[[Path], dict]:
    """One fit of ``init`` × ``heads`` with ``seed``, as a stage: its MLflow run id, test
    metrics, best validation loss and epochs."""
    fit, data, reports, emb, graph, valid = x.fit, x.data, x.reports, x.embeddings, x.graph, x.valid

    def stage(folder: Path) -> dict:
        from kinpath.phenotyping.cli import cli, nested

        folder_for = emb[next(iter(emb))] if init == "random" else emb[init]
        options: dict[str, object] = {
            "data.data": [str(p) for p in reports], "data.embeddings": folder_for,
            "data.id_column": data.id_column, "data.text_column": data.text_column,
            "data.split_column": data.split_column, "data.graph": graph,
            "seed_everything": seed,
            "model.init": "random" if init == "random" else "pretrained", "model.heads": heads,
            "trainer.logger.init_args.run_name": f"mtcnn-{init}-{heads}-s{seed}",
            "trainer.enable_model_summary": False, "checkpoint.dirpath": str(folder / "checkpoints"),
        } | ({"data.valid_combinations": valid} if valid else {}) | fit.overrides  # fmt: skip
        args = {"fit": nested(options) | ({"config": [fit.config]} if fit.config else {})}
        c = cli(args, quiet=True)
        metrics = {
            k: float(v) for k, v in c.trainer.callback_metrics.items() if k.startswith("test/")
        }
        best = c.trainer.checkpoint_callback.best_model_score  # type: ignore[union-attr]
        return {
            "run_id": c.trainer.logger.run_id,  # type: ignore[union-attr]
            "metrics": metrics,
            "val_loss": None if best is None else float(best),
            "epochs": c.trainer.current_epoch,
        }

    return stage
