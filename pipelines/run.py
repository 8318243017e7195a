"""``kinpath run``: graph → embeddings → MT-CNN fits → registry → batch prediction → report.

Stages, each writing a folder under ``work/`` with a ``stage.json``::

    data/         the reports table (the given one is only checksummed; the
                  embedded default writes synthetic reports here)
    graph/        kinpath kg build (sources, or the synthetic mini graph)
    embeddings/   word2vec and kg-joint vectors, and their evaluation
    fit-<init>-<heads>-<seed>/   one MT-CNN fit (LightningCLI, one MLflow run) per
                  initialization × heads × seed
    baseline/     TF-IDF + logistic regression
    ensemble-<init>-<heads>/   with ``registry.ensemble``: a method's seeds as one model
                  (pipelines.ensemble), logged as an MLflow run of its own
    registry/     the champion's run registered, alias set (``champion: best``: the
                  config with the lowest mean validation loss, its best seed; with
                  ``registry.ensemble``, the ensemble of the lowest validation loss)
    predict/      kinpath predict over the test split with models:/NAME@ALIAS (the
                  split's texts pass through a transient file, removed once scored)
    report/       results.md and results.html with the plots, also logged to MLflow

A stage's ``stage.json`` holds a key: the checksum of its settings, of the
keys of the stages it reads, of the source code of the packages it runs (the
graph: kg/; the embeddings: kg/ and embeddings/; the fits and the baseline:
those and phenotyping/; the rest: all four) and, for the stages that write to
MLflow, of the tracking URI. A rerun skips every stage whose key
is unchanged and whose outputs still exist (the MLflow run, the model
version), so changing, say, the kg-joint λ redoes the embeddings and what
depends on them, and nothing else; pointing at another tracking store redoes
the MLflow stages there.

The tracking URI is ``tracking_uri`` if given, else ``MLFLOW_TRACKING_URI``,
else ``sqlite:///mlruns.db``; a relative SQLite path is resolved against the
project folder (the nearest folder above the current one holding a
``pyproject.toml``, else the current one), so every folder of a checkout
shares one store, and the absolute URI is printed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from kinpath.embeddings.config import JointConfig, Word2VecConfig
from kinpath.kg.errors import InputError
from kinpath.kg.graph import build_graph, file_sha256
from kinpath.kg.pairs import PairConfig
from kinpath.kg.reports import read_reports, table_paths, table_sha256
from kinpath.kg.secrets import redact
from kinpath.phenotyping.store import tracking_uri as store_uri
from kinpath.phenotyping.table import aggregate_seeds, method_table
from kinpath.pipelines.report import task_names

log = logging.getLogger(__name__)

PACKAGES = ("kg", "embeddings", "phenotyping", "pipelines")
FIT_PACKAGES = ("kg", "embeddings", "phenotyping")


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
    config: str | None = None  # a `lightning fit` YAML; None: the module's defaults and fit_args
    fit_args: list[str] = field(default_factory=lambda: [
        "--trainer.max_epochs=8", "--trainer.enable_progress_bar=false",
    ])  # fmt: skip
    inits: list[str] = field(default_factory=lambda: ["random", "word2vec", "kg-joint"])
    heads: list[str] = field(default_factory=lambda: ["plain"])  # and/or label-knowledge
    seeds: list[int] = field(default_factory=list)  # empty: the run's one seed
    # extra seeds for some methods only ("<init> / <heads>": [seeds]), for the comparisons
    # that need a spread without paying for every method's
    more_seeds: dict[str, list[int]] = field(default_factory=dict)


@dataclass(frozen=True)
class RegistryConfig:
    model_name: str = "kinpath-demo"
    alias: str = "champion"
    # which fit is registered and promoted: "best" (lowest mean validation loss over seeds,
    # then that config's best seed), an initialization ("kg-joint": its first heads), or
    # "<init> / <heads>"
    champion: str = "best"
    # register a method's seeds as one model, their class probabilities averaged
    # (pipelines.ensemble): with champion "best", every method fitted with two seeds or more
    # is built and the ensemble of the lowest validation loss registered; with a named
    # champion, its ensemble (a method with one seed: that fit). On TCGA three seeds' ensemble
    # beats every single fit on site and histology, at three networks' cost per report
    # (docs/results/tcga.md)
    ensemble: bool = False


class Stages:
    """Runs stages in order, skipping those whose key matches their stage.json."""

    def __init__(self, work: Path):
        self.work = work
        self.keys: dict[str, str] = {}
        self.outputs: dict[str, dict] = {}
        self.timings: dict[str, str] = {}

    def run(
        self,
        name: str,
        settings: object,
        needs: list[str],
        fn: Callable[[Path], dict],
        exists: Callable[[dict], bool] | None = None,
        packages: tuple[str, ...] = PACKAGES,
    ) -> dict:
        """Run ``fn`` into the stage's folder, or reuse its output if its key is unchanged
        and ``exists(output)`` (when given) confirms that what it made is still there;
        ``packages``: the kinpath packages whose code the stage runs."""
        code = source_checksum(packages)
        key = hashlib.sha256(
            json.dumps(
                {"settings": settings, "needs": [self.keys[n] for n in needs], "code": code},
                sort_keys=True,
                default=str,
            ).encode()
        ).hexdigest()[:16]
        folder = self.work / name
        state = folder / "stage.json"
        if state.exists():
            saved = json.loads(state.read_text())
            if saved.get("key") == key and exists is not None and not exists(saved["output"]):
                log.warning(
                    "stage %-12s: its outputs are gone from the tracking store; redoing it", name
                )
            elif saved.get("key") == key:
                log.info("stage %-12s cached (%s)", name, key)
                self.keys[name], self.outputs[name] = key, saved["output"]
                self.timings[name] = "cached"
                return saved["output"]
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        log.info("stage %-12s running", name)
        t = time.perf_counter()
        output = fn(folder)
        seconds = time.perf_counter() - t
        state.write_text(
            json.dumps(
                {"key": key, "seconds": round(seconds, 1), "output": output}, indent=2, default=str
            )
            + "\n"
        )
        self.keys[name], self.outputs[name] = key, output
        self.timings[name] = f"{seconds:.0f}s"
        log.info("stage %-12s done in %.1fs", name, seconds)
        return output


def run(
    work: Path = Path("runs/demo"),
    tracking_uri: str | None = None,
    seed: int = 42,
    data: DataConfig = DataConfig(),
    graph: GraphConfig = GraphConfig(),
    embeddings: EmbeddingConfig = EmbeddingConfig(),
    fit: FitConfig = FitConfig(),
    registry: RegistryConfig = RegistryConfig(),
    docs: Path | None = None,
) -> dict:
    """Run the whole pipeline; the defaults are the embedded demo (synthetic reports and graph).

    Args:
        work: Folder for every stage's output (and the cache of stages).
        tracking_uri: MLflow tracking URI (default: MLFLOW_TRACKING_URI, else
            sqlite:///mlruns.db in the project folder).
        seed: The one seed.
        data: Reports: a table, or synthetic reports.
        graph: Knowledge-graph sources, or the synthetic mini graph.
        embeddings: Embedding settings.
        fit: MT-CNN fits.
        registry: Registered model name, alias and which initialization is the champion.
        docs: A documentation page the results are also written to, with the command, date,
            machine and commit that made them (configs/tcga.yaml: docs/results/tcga-run.md).
    """
    tracking_uri = store_uri(tracking_uri)
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri  # the fits' LightningCLI reads it
    log.info("MLflow tracking store: %s", tracking_uri)
    from kinpath.phenotyping.network import HEADS

    for h in fit.heads:
        if h not in HEADS:
            raise InputError(f"fit.heads: {h!r} is not one of {HEADS}")
    methods_fitted = [method_name(i, h) for i in fit.inits for h in fit.heads]
    for m in fit.more_seeds:
        if _named_method(m, fit) not in methods_fitted or "/" not in m:
            raise InputError(f"fit.more_seeds: {m!r} is not '<init> / <heads>' of a fitted "
                             f"method ({', '.join(methods_fitted)})")  # fmt: skip
    if registry.champion != "best" and _named_method(registry.champion, fit) not in methods_fitted:
        raise InputError(f"registry.champion {registry.champion!r} is none of the fits "
                         f"({', '.join(methods_fitted)}) nor 'best'")  # fmt: skip
    work.mkdir(parents=True, exist_ok=True)
    st = Stages(work)
    t0 = time.perf_counter()

    given_sha = None
    if data.reports:
        for p in table_paths(data.reports):
            if not p.exists():
                raise InputError("no such report table", path=p)
        given_sha = table_sha256(data.reports)

    def data_stage(folder: Path) -> dict:
        if data.reports:
            return {
                "reports": [str(p.resolve()) for p in table_paths(data.reports)],
                "sha256": given_sha,
            }
        from kinpath.pipelines.synthetic import synthetic_reports, write_valid_combinations

        p = folder / "reports.csv"
        synthetic_reports(data.synthetic_reports, data.synthetic_seed).to_csv(p, index=False)
        valid = write_valid_combinations(folder / "valid_site_histology.csv")
        return {"reports": [str(p.resolve())], "sha256": file_sha256(p), "synthetic": True,
                "valid_combinations": str(valid.resolve())}  # fmt: skip

    valid_sha = file_sha256(Path(data.valid_combinations)) if data.valid_combinations else None
    data_settings = asdict(data) | {"sha256": given_sha, "valid_sha256": valid_sha}
    # given tables: the stage only records them, so no code of ours enters its key (an edit to
    # the orchestration must not redo hours of fits); synthetic ones come from pipelines/
    data_out = st.run("data", data_settings, [], data_stage,
                      packages=() if data.reports else ("pipelines",))  # fmt: skip
    reports = [Path(p) for p in data_out["reports"]]
    valid = data.valid_combinations or data_out.get("valid_combinations")

    def graph_stage(folder: Path) -> dict:
        if graph.umls or graph.obo:
            umls_dirs, obo_files = (
                ([Path(graph.umls)] if graph.umls else []),
                ([Path(graph.obo)] if graph.obo else []),
            )
        else:
            from kinpath.pipelines.synthetic import write_mini_graph

            umls_dirs, obo_files = [write_mini_graph(folder / "META")], []
        res = build_graph(folder / "graph", umls_dirs=umls_dirs, obo_files=obo_files)
        return {"graph": str(res.out), "counts": res.counts}

    g = st.run("graph", _source_settings(graph), [], graph_stage, packages=("kg",))

    def embeddings_stage(folder: Path) -> dict:
        from kinpath.embeddings.evaluate import evaluation
        from kinpath.embeddings.train import Selection, TrainRequest, train_methods

        rows = Selection("train", data.split_column, data.text_column, data.id_column)
        request = TrainRequest(reports, folder, Path(g["graph"]), seed, rows, embeddings.word2vec,
                               joint=embeddings.joint, pairs=embeddings.pairs,
                               heldout_fraction=embeddings.heldout_fraction)  # fmt: skip
        written = train_methods(methods, request)
        evaluation(list(written.values()), graph=Path(g["graph"]), out=folder / "evaluation")
        return {m: str(p) for m, p in written.items()}

    # the vectors the fits need; a random initialization borrows a trained method's vocabulary
    methods = [i for i in fit.inits if i != "random"] or ["word2vec"]
    emb = st.run("embeddings", _jsonable(embeddings) | {"methods": methods}, ["data", "graph"],
                 embeddings_stage, packages=("kg", "embeddings"))  # fmt: skip

    # per method (initialization / heads), one fit per seed; a fit's key holds only what it
    # runs, so adding a seed or a method leaves the fits already made cached
    fits: dict[str, list[dict]] = {}
    config_sha = file_sha256(Path(fit.config)) if fit.config else None
    for init in fit.inits:
        for heads in fit.heads:
            extra = next((v for m, v in fit.more_seeds.items()
                          if _named_method(m, fit) == method_name(init, heads)), [])  # fmt: skip
            for s in dict.fromkeys([*(fit.seeds or [seed]), *extra]):
                stage_name = f"fit-{init}-{heads}-{s}"
                out = st.run(
                    stage_name,
                    {"init": init, "heads": heads, "seed": s, "config": fit.config,
                     "fit_args": fit.fit_args, "tracking": tracking_uri, "config_sha": config_sha},
                    ["data", "graph", "embeddings"],
                    _fit_stage(init, heads, fit, reports, emb, data, s, g["graph"], valid),
                    exists=lambda out: _run_exists(out["run_id"]), packages=FIT_PACKAGES,
                )  # fmt: skip
                fits.setdefault(method_name(init, heads), []).append(
                    out | {"seed": s, "stage": stage_name}
                )
    results: dict[str, dict[str, float]] = {}
    spreads: dict[str, dict[str, float]] = {}
    for name, runs in fits.items():
        results[name], spreads[name] = aggregate_seeds([r["metrics"] for r in runs])
    champion, champion_fit = _champion(registry.champion, fit, fits)
    seeds_of = {n: [r["seed"] for r in rs] for n, rs in fits.items()}
    if registry.ensemble:
        champion, champion_fit = _ensembles(st, registry, fits, champion, champion_fit,
                                            results, seeds_of, tracking_uri)  # fmt: skip
    log.info(
        "champion: %s, seed %s (run %s)", champion, champion_fit["seed"], champion_fit["run_id"]
    )

    def baseline_stage(folder: Path) -> dict:
        from kinpath.phenotyping.baseline import tfidf_baseline
        from kinpath.phenotyping.data import ReportDataModule

        dm = ReportDataModule([str(p) for p in reports], embeddings=emb[methods[-1]], id_column=data.id_column,
                              text_column=data.text_column, split_column=data.split_column, seed=seed)  # fmt: skip
        return {"metrics": tfidf_baseline(dm)}

    base = st.run("baseline", {"seed": seed}, ["data", "embeddings"], baseline_stage,
                  packages=FIT_PACKAGES)  # fmt: skip

    def registry_stage(folder: Path) -> dict:
        from kinpath.pipelines import registry as reg

        r = reg.register(champion_fit["run_id"], registry.model_name, tracking_uri)
        reg.promote(registry.model_name, r.version, registry.alias, tracking_uri)
        return {
            "name": r.name,
            "version": r.version,
            "uri": f"models:/{registry.model_name}@{registry.alias}",
        }

    model = st.run("registry", asdict(registry) | {"tracking": tracking_uri,
                   "run": champion_fit["run_id"]}, ["data"], registry_stage,
                   exists=lambda out: _version_exists(out["name"], out["version"]))  # fmt: skip

    def predict_stage(folder: Path) -> dict:
        from kinpath.pipelines.batch import load_model, predict

        # the test split's rows as the batch job's input: a transient local file, removed once
        # scored, so no copy of report text stays in the run folder
        test = pd.concat(
            read_reports(
                reports, data.id_column, data.text_column, where={data.split_column: "test"}
            )
        )[[data.id_column, data.text_column]]
        src = folder / "test_reports.parquet"
        test.to_parquet(src, index=False)
        try:
            summary = predict(load_model(model["uri"], tracking_uri), src, folder / "predictions.parquet",
                              id_column=data.id_column, text_column=data.text_column)  # fmt: skip
        finally:
            src.unlink()
        return {"summary": summary, "predictions": str(folder / "predictions.parquet")}

    pred = st.run("predict", {"model": model}, ["registry", "data"], predict_stage)

    def report_stage(folder: Path) -> dict:
        from kinpath.pipelines.report import write_report

        return write_report(
            folder, results | {"tfidf-logreg": base["metrics"]}, spreads, emb, pred, model,
            champion, champion_fit, tracking_uri, seeds_of, champion_reason(registry.champion),
        )  # fmt: skip

    fit_stages = [n for n in st.keys if n.startswith(("fit-", "ensemble"))]
    rep = st.run(
        "report",
        {"champion": champion},
        [*fit_stages, "baseline", "predict", "embeddings"],
        report_stage,
    )
    results["tfidf-logreg"] = base["metrics"]
    print(method_table(results, task_names(results), spread=spreads))
    print(TABLE_LEGEND)
    print(f"registered as {model['uri']}: {champion} ({champion_reason(registry.champion)})")
    print(f"stages: {json.dumps(st.timings)}; total {time.perf_counter() - t0:.0f}s")
    print(f"report: {rep['markdown']} and {rep['html']}")
    if docs is not None:
        from kinpath.pipelines.report import publish

        argv = sys.argv[1:]
        command = "kinpath " + " ".join(argv) if argv[:1] == ["run"] else "pipelines.run.run()"
        print(f"docs: {publish(Path(rep['markdown']), docs, command)}")
    print(f"MLflow: mlflow ui --backend-store-uri {redact(tracking_uri)}   (model {model['uri']})")
    return {"report": rep, "model": model, "timings": st.timings}


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


def _named_method(name: str, fit: FitConfig) -> str:
    """The row of ``"<init> / <heads>"`` or of ``"<init>"`` (its first heads)."""
    init, _, heads = (x.strip() for x in name.partition("/"))
    return method_name(init, heads or fit.heads[0])


def _champion(choice: str, fit: FitConfig, fits: dict[str, list[dict]]) -> tuple[str, dict]:
    """The registered method and fit: the named one's best seed, or with ``best`` the method
    of the lowest mean validation loss (the checkpoints' criterion) and its best seed."""

    def loss(r: dict) -> float:
        return float(r.get("val_loss", float("inf")))

    if choice == "best":
        name = min(fits, key=lambda n: sum(map(loss, fits[n])) / len(fits[n]))
    else:
        name = _named_method(choice, fit)
    return name, min(fits[name], key=loss)


def _ensembles(
    st: Stages,
    registry: RegistryConfig,
    fits: dict[str, list[dict]],
    champion: str,
    champion_fit: dict,
    results: dict[str, dict[str, float]],
    seeds_of: dict[str, list[int]],
    tracking_uri: str,
) -> tuple[str, dict]:
    """One ensemble stage per method fitted with two seeds or more (with ``champion: best``;
    else the named champion's only), each a row of the results; the champion becomes the
    ensemble of the lowest validation loss (the ensemble's own, over the whole split)."""
    from kinpath.pipelines.ensemble import ensemble

    names = [n for n, rs in fits.items() if len(rs) >= 2]
    if registry.champion != "best":
        names = [n for n in names if n == champion]
    if not names:
        log.warning("registry.ensemble: no champion candidate has two seeds; registering %s, "
                    "seed %s", champion, champion_fit["seed"])  # fmt: skip
        return champion, champion_fit

    def stage(members: list[str]) -> Callable[[Path], dict]:
        return lambda folder: ensemble(members, tracking_uri)

    built = {}
    for name in names:
        members = [r["run_id"] for r in fits[name]]
        slug = fits[name][0]["stage"].rsplit("-", 1)[0].replace("fit-", "ensemble-", 1)
        built[name] = st.run(
            slug, {"members": members, "tracking": tracking_uri},
            ["data", *(r["stage"] for r in fits[name])], stage(members),
            exists=lambda out: _run_exists(out["run_id"]),
        )  # fmt: skip
        results[f"{name} ensemble"] = built[name]["metrics"]
        seeds_of[f"{name} ensemble"] = built[name]["seeds"]
    best = min(built, key=lambda n: built[n]["val_loss"])
    e = built[best]
    return f"{best} ensemble", {"run_id": e["run_id"], "metrics": e["metrics"],
                                "val_loss": e["val_loss"], "seed": e["seeds"]}  # fmt: skip


def _fit_stage(
    init: str,
    heads: str,
    fit: FitConfig,
    reports: list[Path],
    emb: dict,
    data: DataConfig,
    seed: int,
    graph: str,
    valid: str | None,
) -> Callable[[Path], dict]:
    def stage(folder: Path) -> dict:
        from kinpath.phenotyping.cli import cli

        folder_for = emb[next(iter(emb))] if init == "random" else emb[init]
        args = ["fit"] + (["-c", fit.config] if fit.config else []) + [
            "--data.data", json.dumps([str(p) for p in reports]), "--data.embeddings", folder_for,
            "--data.id_column", data.id_column, "--data.text_column", data.text_column,
            "--data.split_column", data.split_column, "--seed_everything", str(seed),
            "--model.init", "random" if init == "random" else "pretrained", "--model.heads", heads,
            "--trainer.logger.init_args.run_name", f"mtcnn-{init}-{heads}-s{seed}", "--data.graph", graph,
            "--trainer.enable_model_summary=false",
            *(["--data.valid_combinations", valid] if valid else []),
            f"--checkpoint.dirpath={folder / 'checkpoints'}",
            *fit.fit_args,
        ]  # fmt: skip
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


def source_checksum(packages: tuple[str, ...] = PACKAGES) -> str:
    """A checksum of these kinpath packages' code and package data: a change to it redoes
    the stages that run them."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for pkg in packages:
        for f in sorted((root / pkg).rglob("*")):
            if f.is_file() and f.suffix in (".py", ".csv", ".yaml"):
                h.update(str(f.relative_to(root)).encode() + f.read_bytes())
    return h.hexdigest()[:16]


def _run_exists(run_id: str) -> bool:
    import mlflow

    try:
        return mlflow.MlflowClient().get_run(run_id).info.lifecycle_stage != "deleted"
    except mlflow.exceptions.MlflowException:
        return False


def _version_exists(name: str, version: str) -> bool:
    import mlflow

    try:
        mlflow.MlflowClient().get_model_version(name, version)
    except mlflow.exceptions.MlflowException:
        return False
    return True


def _source_settings(graph: GraphConfig) -> dict:
    out: dict[str, object] = asdict(graph)
    if graph.umls:
        out["files"] = {p.name: file_sha256(p) for p in sorted(Path(graph.umls).glob("*.RRF"))}
    if graph.obo:
        out["obo_sha256"] = file_sha256(Path(graph.obo))
    return out


def _jsonable(x: object) -> dict:
    return json.loads(json.dumps(asdict(x), default=dict))  # type: ignore[call-overload]


def demo(work: Path = Path("runs/demo"), tracking_uri: str | None = None) -> None:
    """The embedded demo: `kinpath run` on synthetic reports and the synthetic mini graph.

    Args:
        work: Folder for every stage's output.
        tracking_uri: MLflow tracking URI (default: MLFLOW_TRACKING_URI, else
            sqlite:///mlruns.db in the project folder).
    """
    run(work=work, tracking_uri=tracking_uri)
