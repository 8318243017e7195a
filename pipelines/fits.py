"""The fits of ``kinpath run`` and how the champion is chosen among them: one MT-CNN fit per
initialization × heads × seed (LightningCLI, one MLflow run each), seed ensembles of the
methods fitted with several seeds, the best ensemble distilled into one network, and the
champion (the lowest validation loss, a named method, or the distilled network where it
holds up)."""

from __future__ import annotations

import logging
import shutil
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kinpath.common import InputError
from kinpath.pipelines.runconfig import DataConfig, FitConfig, RegistryConfig
from kinpath.pipelines.stages import ENSEMBLE_CODE, FIT_PACKAGES, Stages, run_exists

log = logging.getLogger(__name__)


TABLE_LEGEND = (
    "Each task's cell: micro-F1 / macro-F1 / share auto-coded, on the test split (all test "
    "splits pooled; mean over seeds, ± their standard deviation); rare codes: macro-F1 over "
    "the codes with fewer than 10 training reports. The report has the tables per split."
)


def champion_reason(choice: str) -> str:
    """Why the registered method is the one registered, in words (``distilled`` says its own:
    :func:`distilled`)."""
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

    if choice in ("best", "distilled"):
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
    if registry.champion not in ("best", "distilled"):
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
        built[name] = st.run(
            ensemble_stage(fits[name]), {"members": members, "tracking": tracking_uri},
            ["data", *(r["stage"] for r in fits[name])], stage(members),
            exists=lambda out: run_exists(out["run_id"]), packages=ENSEMBLE_CODE,
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


def ensemble_stage(runs: list[dict]) -> str:
    """The stage of a method's seed ensemble: ``fit-<init>-<heads>-<seed>`` →
    ``ensemble-<init>-<heads>``."""
    return str(runs[0]["stage"]).rsplit("-", 1)[0].replace("fit-", "ensemble-", 1)


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


def fit_stage(
    init: str, heads: str, seed: int, x: FitInputs, extra: dict[str, Any] | None = None,
    run_name: str | None = None,
) -> Callable[[Path], dict]:  # fmt: skip
    """One fit of ``init`` × ``heads`` with ``seed``, as a stage: its MLflow run id, test
    metrics, best validation loss and epochs. ``extra``: options over the run's (a teacher)."""
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
            "trainer.logger.init_args.run_name": run_name or f"mtcnn-{init}-{heads}-s{seed}",
            "trainer.enable_model_summary": False, "checkpoint.dirpath": str(folder / "checkpoints"),
        } | ({"data.valid_combinations": valid} if valid else {}) | fit.overrides_for(heads) | (extra or {})  # fmt: skip
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


@dataclass
class Distilled:
    """What :func:`distilled` made: the champion (the distilled network, or the ensemble it
    did not match), the distilled network's results row and seed, and why."""

    champion: str
    champion_fit: dict
    rows: dict[str, dict[str, float]]
    seeds: dict[str, list[int]]
    reason: str


def best_epoch_figures(run_id: str, tracking_uri: str) -> dict[str, float]:
    """A fit's ``val/<task>/macro_f1`` at the epoch of its lowest ``val/loss`` (the
    checkpoint it keeps), from its MLflow metric history."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    losses = client.get_metric_history(run_id, "val/loss")
    if not losses:
        return {}
    step = min(losses, key=lambda m: (m.value, m.step)).step
    out = {}
    for t in _val_macro_f1(client.get_run(run_id).data.metrics):
        at = [
            m.value
            for m in client.get_metric_history(run_id, f"val/{t}/macro_f1")
            if m.step == step
        ]
        if at:
            out[t] = float(at[-1])
    return out


def _val_macro_f1(metrics: dict[str, float]) -> dict[str, float]:
    """``val/<task>/macro_f1`` of a run's metrics, by task."""
    return {k.split("/")[1]: float(v) for k, v in metrics.items()
            if k.startswith("val/") and k.endswith("/macro_f1")}  # fmt: skip


def within_spread(
    student: dict[str, float], ensemble: dict[str, float], members: list[dict[str, float]]
) -> tuple[bool, list[str]]:
    """Whether the distilled network's validation macro-F1 is within the seed spread of the
    ensemble's on every task: no lower than the ensemble's less the standard deviation of its
    members' (each at its best epoch). The tasks where it is not, each with its figures."""
    short = []
    for t, e in sorted(ensemble.items()):
        seen = [m[t] for m in members if t in m]
        sd = statistics.stdev(seen) if len(seen) >= 2 else 0.0
        if t in student and student[t] < e - sd:
            short.append(f"{t} {student[t]:.3f} against {e:.3f} ± {sd:.3f}")
        elif t not in student:
            short.append(f"{t}: no validation figure")
    return not short, short


def distilled(
    st: Stages, teacher: Ensembles, fits: dict[str, list[dict]], x: FitInputs, seed: int,
    tracking_uri: str, overrides: dict[str, Any] | None = None, start: str = "fresh",
) -> Distilled:  # fmt: skip
    """``registry.champion: distilled``: the champion ensemble distilled into one network of
    its method (``model.teacher``, one fit with the run's seed, its heads' options and then
    :func:`distill_options`: ``registry.distill_start`` and ``registry.distill_overrides``),
    which becomes the champion
    when its validation macro-F1 is within the ensemble's seed spread on every task
    (:func:`within_spread`); otherwise the ensemble stays, and the reason says why."""
    from mlflow import MlflowClient

    if not teacher.champion.endswith(" ensemble"):
        return Distilled(teacher.champion, teacher.champion_fit, {}, {},
                         "registry.champion: distilled, but no method has two seeds to make an "
                         "ensemble of; registered the best fit")  # fmt: skip
    method = teacher.champion.removesuffix(" ensemble")
    init, heads = method.removeprefix("mtcnn ").split(" / ")
    ensemble_run = teacher.champion_fit["run_id"]
    name = f"distill-{init}-{heads}"
    own = distill_options(start, fits[method], overrides or {})

    def stage(folder: Path) -> dict:
        client = MlflowClient(tracking_uri=tracking_uri)
        bundle = Path(client.download_artifacts(ensemble_run, "bundle", str(folder)))
        try:  # the teacher is read once, when the fit starts; the run keeps its own copy
            out = fit_stage(init, heads, seed, x, run_name=f"mtcnn-{init}-{heads}-distilled-s{seed}",
                            extra=own | {"model.teacher": str(bundle)})(folder)  # fmt: skip
        finally:
            shutil.rmtree(bundle, ignore_errors=True)
        return out

    out = st.run(
        name,
        {"teacher": ensemble_run, "init": init, "heads": heads, "seed": seed,
         "config": x.fit.config, "overrides": x.fit.overrides_for(heads) | own, "tracking": tracking_uri},
        ["data", "graph", "embeddings", ensemble_stage(fits[method])], stage,
        exists=lambda o: run_exists(o["run_id"]), packages=FIT_PACKAGES,
    )  # fmt: skip
    client = MlflowClient(tracking_uri=tracking_uri)
    ensemble_val = _val_macro_f1(client.get_run(ensemble_run).data.metrics)
    members = [best_epoch_figures(r["run_id"], tracking_uri) for r in fits[method]]
    student = best_epoch_figures(out["run_id"], tracking_uri)
    holds, short = within_spread(student, ensemble_val, members)
    row = f"{method} distilled"
    made = {"run_id": out["run_id"], "metrics": out["metrics"], "val_loss": out["val_loss"],
            "seed": seed}  # fmt: skip
    log.info("distilled %s: validation macro-F1 %s; the ensemble's %s", method,
             _figures_text(student), _figures_text(ensemble_val))  # fmt: skip
    if holds:
        reason = (f"{teacher.champion} distilled into one network, registry.champion: distilled; "
                  "its validation macro-F1 is within the members' seed spread of the ensemble's "
                  "on every task")  # fmt: skip
        return Distilled(row, made, {row: out["metrics"]}, {row: [seed]}, reason)
    reason = (f"{teacher.champion}, registry.champion: distilled; the distilled network stayed "
              f"below the ensemble's validation macro-F1 less the seed spread on "
              f"{'; '.join(short)}")  # fmt: skip
    return Distilled(teacher.champion, teacher.champion_fit, {row: out["metrics"]},
                     {row: [seed]}, reason)  # fmt: skip


def distill_options(start: str, members: list[dict], overrides: dict[str, Any]) -> dict[str, Any]:
    """The distillation's own ``lightning fit`` options: with ``start`` "best-member", the
    student starts from the ensemble's member of the lowest validation loss
    (``model.teacher_init``; ``members`` in the ensemble's order); ``overrides`` over that."""
    if start == "fresh":
        return dict(overrides)
    if start != "best-member":
        raise InputError(f"registry.distill_start: {start!r} is neither 'fresh' nor 'best-member'")
    loss = [float("inf") if m.get("val_loss") is None else m["val_loss"] for m in members]
    return {"model.teacher_init": loss.index(min(loss))} | overrides


def _figures_text(figures: dict[str, float]) -> str:
    return ", ".join(f"{t} {v:.3f}" for t, v in sorted(figures.items()))
