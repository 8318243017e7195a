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
    distill-<init>-<heads>/   with ``registry.champion: distilled``: the best ensemble
                  distilled into one network of its method (``model.teacher``)
    registry/     the champion's run registered, alias set (``champion: best``: the
                  config with the lowest mean validation loss, its best seed; with
                  ``registry.ensemble``, the ensemble of the lowest validation loss; with
                  ``distilled``, the distilled network where its validation macro-F1 is
                  within the ensemble's seed spread on every task, else the ensemble; a
                  distilled champion's ensemble is registered one version below it, alias
                  ``teacher``, for the reviewer and ``bench/batch_throughput.py --against``)
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

import json
import logging
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd

from kinpath.common import InputError, redact
from kinpath.kg.graph import build_graph, file_sha256
from kinpath.kg.reports import read_reports, table_paths, table_sha256
from kinpath.phenotyping.config import TfidfConfig
from kinpath.phenotyping.store import tracking_uri as store_uri
from kinpath.phenotyping.table import aggregate_seeds, method_table
from kinpath.pipelines.environment import environment, record
from kinpath.pipelines.fits import (
    TABLE_LEGEND,
    FitInputs,
    champion_of,
    champion_reason,
    distilled,
    ensembles,
    fit_stage,
    method_name,
    named_method,
)  # fmt: skip
from kinpath.pipelines.report import task_names
from kinpath.pipelines.runconfig import (
    DataConfig,
    EmbeddingConfig,
    FitConfig,
    GraphConfig,
    RegistryConfig,
)  # fmt: skip
from kinpath.pipelines.stages import (
    FIT_PACKAGES,
    Stages,
    jsonable,
    run_exists,
    source_settings,
    version_exists,
)  # fmt: skip

log = logging.getLogger(__name__)
TEACHER_ALIAS = "teacher"


def run(
    work: Path = Path("runs/demo"),
    tracking_uri: str | None = None,
    seed: int = 42,
    reproducible: bool = True,
    data: DataConfig = DataConfig(),
    graph: GraphConfig = GraphConfig(),
    embeddings: EmbeddingConfig = EmbeddingConfig(),
    fit: FitConfig = FitConfig(),
    registry: RegistryConfig = RegistryConfig(),
    baseline: TfidfConfig = TfidfConfig(),
    docs: Path | None = None,
) -> dict:
    """Run the whole pipeline; the defaults are the embedded demo (synthetic reports and graph).

    Args:
        work: Folder for every stage's output (and the cache of stages).
        tracking_uri: MLflow tracking URI (default: MLFLOW_TRACKING_URI, else
            sqlite:///mlruns.db in the project folder).
        seed: The one seed.
        reproducible: The same config and inputs give the same vectors and bundles, byte for
            byte: word2vec and kg-joint train on one thread, the fits with
            ``trainer.deterministic: warn`` (torch's deterministic algorithms where the ops
            have them). Either way each stage names the libraries and thread settings that
            ran it (``work/environments/``).
        data: Reports: a table, or synthetic reports.
        graph: Knowledge-graph sources, or the synthetic mini graph.
        embeddings: Embedding settings.
        fit: MT-CNN fits.
        registry: Registered model name, alias and which initialization is the champion.
        baseline: The TF-IDF + logistic regression reference; ``n_jobs``: its tasks' fits
            in that many worker processes at once (default: one a core from 1,000
            training reports on; on the TCGA tables two took 0.63 of one's time and 1.9
            of its peak memory, 8.8 GiB).
        docs: A documentation page the results are also written to, with the command, date,
            machine and commit that made them (configs/tcga.yaml: docs/results/tcga-run.md).
    """
    from kinpath.phenotyping.network import HEADS

    for h in fit.heads:
        if h not in HEADS:
            raise InputError(f"fit.heads: {h!r} is not one of {HEADS}")
    methods_fitted = [method_name(i, h) for i in fit.inits for h in fit.heads]
    for m in fit.more_seeds:
        if named_method(m, fit) not in methods_fitted or "/" not in m:
            raise InputError(f"fit.more_seeds: {m!r} is not '<init> / <heads>' of a fitted "
                             f"method ({', '.join(methods_fitted)})")  # fmt: skip
    for h in fit.heads_overrides:
        if h not in fit.heads:
            raise InputError(f"fit.heads_overrides: {h!r} is none of the fitted heads "
                             f"({', '.join(fit.heads)})")  # fmt: skip
    if (
        registry.champion not in ("best", "distilled")
        and named_method(registry.champion, fit) not in methods_fitted
    ):
        raise InputError(f"registry.champion {registry.champion!r} is none of the fits "
                         f"({', '.join(methods_fitted)}) nor 'best' or 'distilled'")  # fmt: skip
    if registry.champion == "distilled" and not registry.ensemble:
        raise InputError("registry.champion: distilled distils the best seed ensemble into one "
                         "network: set registry.ensemble: true (and give a method two seeds or more)")  # fmt: skip
    tracking_uri = store_uri(tracking_uri)
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri  # the fits' LightningCLI reads it
    log.info("MLflow tracking store: %s", tracking_uri)
    if reproducible:
        embeddings, fit, registry = _deterministic(embeddings, fit, registry)
    work.mkdir(parents=True, exist_ok=True)
    env_id = record(work, environment(reproducible, embeddings.word2vec.workers))
    st = Stages(work, env_id, tracking_uri)
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

    g = st.run("graph", source_settings(graph), [], graph_stage, packages=("kg",))

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
    emb = st.run("embeddings", jsonable(embeddings) | {"methods": methods}, ["data", "graph"],
                 embeddings_stage, packages=("kg", "embeddings"))  # fmt: skip

    # per method (initialization / heads), one fit per seed; a fit's key holds only what it
    # runs, so adding a seed or a method leaves the fits already made cached
    fits: dict[str, list[dict]] = {}
    config_sha = file_sha256(Path(fit.config)) if fit.config else None
    inputs = FitInputs(fit, data, reports, emb, g["graph"], valid)
    for init in fit.inits:
        for heads in fit.heads:
            extra = next((v for m, v in fit.more_seeds.items()
                          if named_method(m, fit) == method_name(init, heads)), [])  # fmt: skip
            for s in dict.fromkeys([*(fit.seeds or [seed]), *extra]):
                stage_name = f"fit-{init}-{heads}-{s}"
                out = st.run(
                    stage_name,
                    {"init": init, "heads": heads, "seed": s, "config": fit.config,
                     "overrides": fit.overrides_for(heads), "tracking": tracking_uri,
                     "config_sha": config_sha},
                    ["data", "graph", "embeddings"],
                    fit_stage(init, heads, s, inputs),
                    exists=lambda out: run_exists(out["run_id"]), packages=FIT_PACKAGES,
                )  # fmt: skip
                fits.setdefault(method_name(init, heads), []).append(
                    out | {"seed": s, "stage": stage_name}
                )
    results: dict[str, dict[str, float]] = {}
    spreads: dict[str, dict[str, float]] = {}
    for name, runs in fits.items():
        results[name], spreads[name] = aggregate_seeds([r["metrics"] for r in runs])
    champion, champion_fit = champion_of(registry.champion, fit, fits)
    seeds_of = {n: [r["seed"] for r in rs] for n, rs in fits.items()}
    reason = champion_reason(registry.champion)
    teacher: str | None = None  # a distilled champion's ensemble, registered beside it
    if registry.ensemble:
        built = ensembles(st, registry, fits, (champion, champion_fit), tracking_uri)
        champion, champion_fit = built.champion, built.champion_fit
        results |= built.rows
        seeds_of |= built.seeds
        if registry.champion == "distilled":
            student = distilled(st, built, fits, inputs, seed, tracking_uri,
                                registry.distill_overrides, registry.distill_start)  # fmt: skip
            if student.champion != built.champion:
                teacher = built.champion_fit["run_id"]
            champion, champion_fit, reason = student.champion, student.champion_fit, student.reason
            results |= student.rows
            seeds_of |= student.seeds
    log.info(
        "champion: %s, seed %s (run %s)", champion, champion_fit["seed"], champion_fit["run_id"]
    )

    def baseline_stage(folder: Path) -> dict:
        from kinpath.phenotyping.baseline import tfidf_baseline
        from kinpath.phenotyping.data import ReportDataModule

        dm = ReportDataModule([str(p) for p in reports], embeddings=emb[methods[-1]], id_column=data.id_column,
                              text_column=data.text_column, split_column=data.split_column, seed=seed)  # fmt: skip
        return {"metrics": tfidf_baseline(dm, baseline)}

    # the workers do not change the figures (tests/phenotyping/test_baseline.py)
    made_by = {k: v for k, v in asdict(baseline).items() if k != "n_jobs"}
    base = st.run("baseline", {"seed": seed, "config": made_by}, ["data", "embeddings"], baseline_stage,
                  packages=FIT_PACKAGES)  # fmt: skip

    def registry_stage(folder: Path) -> dict:
        return register_champion(champion_fit["run_id"], registry.model_name, registry.alias,
                                 tracking_uri, teacher)  # fmt: skip

    model = st.run("registry", asdict(registry) | {"tracking": tracking_uri,
                   "run": champion_fit["run_id"], "teacher": teacher}, ["data"], registry_stage,
                   exists=lambda out: version_exists(out["name"], out["version"]))  # fmt: skip

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
        from kinpath.pipelines.report import RunResults, write_report

        made = RunResults(results | {"tfidf-logreg": base["metrics"]}, spreads, emb, pred, model,
                          champion, champion_fit, tracking_uri, seeds_of, reason,
                          st.seconds(), st.environments())  # fmt: skip
        return write_report(folder, made)

    fit_stages = [n for n in st.keys if n.startswith(("fit-", "ensemble", "distill-"))]
    rep = st.run(
        "report",
        {"champion": champion},
        [*fit_stages, "baseline", "predict", "embeddings"],
        report_stage,
    )
    results["tfidf-logreg"] = base["metrics"]
    print(method_table(results, task_names(results), spread=spreads))
    print(TABLE_LEGEND)
    print(f"registered as {model['uri']}: {champion} ({reason}); "
          f"bundle sha256 {model.get('bundle_sha256') or 'not recorded'}")  # fmt: skip
    if model.get("teacher"):
        print(f"its ensemble: {model['teacher']['uri']} (version {model['teacher']['version']})")
    print(f"stages: {json.dumps(st.timings)}; total {time.perf_counter() - t0:.0f}s")
    print(f"report: {rep['markdown']} and {rep['html']}")
    if docs is not None:
        from kinpath.pipelines.report import publish

        argv = sys.argv[1:]
        command = "kinpath " + " ".join(argv) if argv[:1] == ["run"] else "pipelines.run.run()"
        print(f"docs: {publish(Path(rep['markdown']), docs, command)}")
    print(f"MLflow: mlflow ui --backend-store-uri {redact(tracking_uri)}   (model {model['uri']})")
    return {"report": rep, "model": model, "timings": st.timings}


def register_champion(
    run_id: str, name: str, alias: str, tracking_uri: str, teacher: str | None = None
) -> dict:
    """Register run ``run_id`` as a new version of ``name`` with ``alias``; ``teacher``: the
    run of the ensemble a distilled champion stands in for, registered first (one version
    below it) with the alias ``teacher``, for the reviewer and ``batch_throughput --against``."""
    from kinpath.pipelines import registry as reg

    made = {}
    if teacher is not None:
        t = reg.register(teacher, name, tracking_uri)
        reg.promote(name, t.version, TEACHER_ALIAS, tracking_uri)
        made["teacher"] = {"version": t.version, "bundle_sha256": t.bundle_sha256,
                           "uri": f"models:/{name}@{TEACHER_ALIAS}"}  # fmt: skip
    r = reg.register(run_id, name, tracking_uri)
    reg.promote(name, r.version, alias, tracking_uri)
    return made | {"name": r.name, "version": r.version, "uri": f"models:/{name}@{alias}",
                   "bundle_sha256": r.bundle_sha256}  # fmt: skip


def _deterministic(
    embeddings: EmbeddingConfig, fit: FitConfig, registry: RegistryConfig
) -> tuple[EmbeddingConfig, FitConfig, RegistryConfig]:
    """The settings under ``reproducible``: gensim on one thread (its threads race over the
    shared vectors), Lightning's ``deterministic: warn``; a setting they replace is logged."""
    if embeddings.word2vec.workers != 1:
        log.warning("reproducible: word2vec and kg-joint train on one thread "
                    "(embeddings.word2vec.workers was %d)", embeddings.word2vec.workers)  # fmt: skip
        embeddings = replace(embeddings, word2vec=replace(embeddings.word2vec, workers=1))
    det = {"trainer.deterministic": "warn"}
    for where, given in [("fit.overrides", fit.overrides),
                         *((f"fit.heads_overrides.{h}", o) for h, o in fit.heads_overrides.items()),
                         ("registry.distill_overrides", registry.distill_overrides)]:  # fmt: skip
        if given.get("trainer.deterministic", "warn") != "warn":
            log.warning("reproducible: the fits run with trainer.deterministic: warn (%s gave %r)",
                        where, given["trainer.deterministic"])  # fmt: skip
    return (
        embeddings,
        replace(
            fit,
            overrides=fit.overrides | det,
            heads_overrides={h: o | det for h, o in fit.heads_overrides.items()},
        ),
        replace(registry, distill_overrides=registry.distill_overrides | det),
    )


def demo(work: Path = Path("runs/demo"), tracking_uri: str | None = None) -> None:
    """The embedded demo: `kinpath run` on synthetic reports and the synthetic mini graph.

    Args:
        work: Folder for every stage's output.
        tracking_uri: MLflow tracking URI (default: MLFLOW_TRACKING_URI, else
            sqlite:///mlruns.db in the project folder).
    """
    run(work=work, tracking_uri=tracking_uri)
