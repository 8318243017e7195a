"""``kinpath evaluate --group-by institution``: does the promise survive an unseen hospital?

A registry's reports name their facility in a column (``--institution_column``). TCGA
report ids are barcodes whose second field is the tissue source site (TSS), the contributing
institution (``TCGA-02-2470`` → ``02``); no table of which TSS codes belong to one
institution ships with kinpath or the shared data, so there one code is one source.

1. **Folds.** The train and validation rows of every table (test splits untouched) are cut
   into ``folds`` groups by institution (scikit-learn's ``GroupKFold``: no institution in
   two folds). For each, a fit on the rest (their own train/validation split kept) is tested
   on the held-out institutions; beside it, an *in-distribution reference*: a fit tested on
   a random set of patients of the same size, drawn from every institution.
2. **Figures** per fold: the fit's test macro-F1 per task, and the decoded share auto-coded
   and its accuracy per task, scored again from the fit's bundle on the fold's test reports
   (fp32), with the accuracy per institution.
3. **Drift.** Each fold's test reports go through the model's drift check (``kinpath
   drift``); its verdict is set against the outcome: was the accuracy of everything
   auto-coded below 95%?
4. **Recalibration.** For each held-out fold, 100 and 300 of its reports (by patient) play a
   site's reviewed reports: the decoder is refitted on them (``kinpath registry
   recalibrate``'s :func:`kinpath.phenotyping.recalibrate.recalibrate`) and both decoders
   score the fold's other reports.

Fits run one after another in this process; ``out/results.json`` keeps each finished fold,
so a rerun after a crash goes on where it stopped. Report text stays in the fold tables
under ``out`` (local files, as the pipeline's data stage), never in logs or MLflow.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from kinpath.common import InputError
from kinpath.kg.reports import read_reports
from kinpath.pipelines.environment import machine

log = logging.getLogger(__name__)

TASKS = ["site", "subsite", "laterality", "behavior", "histology", "grade"]
REVIEWED = (100, 300)


def institution_of(report_id: str) -> str:
    """The TSS code of a TCGA barcode (``TCGA-02-2470`` → ``02``)."""
    parts = str(report_id).split("-")
    if len(parts) < 3 or parts[0] != "TCGA":
        raise InputError(f"report {report_id!r} is not a TCGA barcode: no institution in it")
    return parts[1]


@dataclass(frozen=True)
class Fold:
    kind: Literal["held-out", "reference"]
    index: int
    test: frozenset[str]  # report ids tested on
    institutions: tuple[str, ...]  # the held-out ones (all, for a reference fold)

    @property
    def key(self) -> str:
        return f"{self.kind}-{self.index}"


def make_folds(pool: pd.DataFrame, k: int, seed: int) -> list[Fold]:
    """``k`` held-out folds by institution and, for each, a patient-grouped random reference
    fold of the same number of reports."""
    from sklearn.model_selection import GroupKFold

    groups = pool["institution"].to_numpy()
    if len(set(groups)) < k:
        raise InputError(f"{len(set(groups))} institutions cannot make {k} folds")
    out = []
    rng = np.random.default_rng(seed)
    for i, (_, test) in enumerate(GroupKFold(n_splits=k).split(pool, groups=groups)):
        held = pool.iloc[test]
        out.append(Fold("held-out", i, frozenset(held["report_id"]),
                        tuple(sorted(set(held["institution"])))))  # fmt: skip
        ref = pool[pool["patient_id"].isin(whole_patients(pool, len(held), rng))]
        out.append(Fold("reference", i, frozenset(ref["report_id"]),
                        tuple(sorted(set(ref["institution"])))))  # fmt: skip
    return out


def whole_patients(table: pd.DataFrame, n: int, rng: np.random.Generator) -> list[str]:
    """Random patients, taken whole, until their reports number ``n`` or more."""
    patients = np.array(table["patient_id"].unique(), dtype=object)  # shuffled in place
    rng.shuffle(patients)
    sizes = table.groupby("patient_id").size()
    chosen, count = [], 0
    for p in patients:
        if count >= n:
            break
        chosen.append(p)
        count += int(sizes[p])
    return chosen


def fold_table(pool: pd.DataFrame, fold: Fold) -> pd.DataFrame:
    """The fit's table: the fold's reports are its test split, the rest keep train / val."""
    t = pool.drop(columns=["institution"]).copy()
    t.loc[t["report_id"].isin(fold.test), "split"] = "test"
    return t


def _fit(table: Path, fold: Fold, config: Path, options: dict[str, Any], seed: int) -> str:
    """One ``lightning fit`` of ``config`` on ``table``; its MLflow run id."""
    from kinpath.phenotyping.cli import cli, nested

    if "data.data" in options:
        raise InputError("overrides: data.data is the fold's own table; give the reports instead")
    ours: dict[str, Any] = (
        {"seed_everything": seed, "trainer.enable_progress_bar": False,
         "trainer.enable_model_summary": False}
        | options
        | {"data.data": [str(table)], "trainer.logger.init_args.run_name": f"institutions-{fold.key}"}
    )  # fmt: skip
    c = cli({"fit": nested(ours) | {"config": [str(config)]}}, quiet=True)
    return str(c.trainer.logger.run_id)  # type: ignore[union-attr]


def _bundle(run_id: str, store: str, out: Path) -> Path:
    from mlflow import MlflowClient

    dest = out / "bundles" / run_id
    if not (dest / "bundle" / "network.json").exists():
        dest.mkdir(parents=True, exist_ok=True)
        MlflowClient(tracking_uri=store).download_artifacts(run_id, "bundle", str(dest))
    return dest / "bundle"


def _scored(bundle: Path, reports: pd.DataFrame) -> pd.DataFrame:
    """``kinpath predict``'s columns for these reports, fp32."""
    from kinpath.phenotyping.bundle import encode, load_bundle
    from kinpath.pipelines.model import predictions

    b = load_bundle(bundle, precision="fp32")
    return predictions(b, encode(b, reports["text"].tolist()), reports["report_id"].tolist())


def coding(rows: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """Per task, the share of labelled reports auto-coded at the fine level and the accuracy
    of those codes (a back-off NOS code is a separate claim, as in the fit's test metrics);
    ``all``: pooled over every auto-coded field. Laterality is judged as the model is trained
    on it: "not applicable" at an unpaired site (a prostate's "Bilateral" label included)."""
    from kinpath.phenotyping.data import laterality_by_rule

    t = laterality_by_rule(truth.fillna("")).set_index("report_id").loc[rows["report_id"]]
    out: dict[str, float] = {}
    right_all = coded_all = 0
    for task in TASKS:
        if f"{task}_label" not in rows or task not in t:
            continue
        y = t[task].fillna("").astype(str).to_numpy()
        labelled = y != ""
        coded = (
            labelled
            & ~rows[f"{task}_abstain"].fillna(True).astype(bool).to_numpy()
            & ~rows[f"{task}_backoff"].fillna(False).astype(bool).to_numpy()
        )
        right = [
            str(lab) == y_ for lab, y_, c in zip(rows[f"{task}_label"], y, coded, strict=True) if c
        ]
        out[f"{task}/coverage"] = float(coded.sum() / max(1, labelled.sum()))
        out[f"{task}/accuracy"] = float(np.mean(right)) if right else float("nan")
        right_all += int(np.sum(right))
        coded_all += len(right)
    out["all/accuracy"] = right_all / coded_all if coded_all else float("nan")
    out["all/coded"] = float(coded_all)
    return out


def _unseen(reports: pd.DataFrame, classes: dict[str, list[str]]) -> dict[str, float]:
    """Share of the labelled site and histology codes that the model has no class for."""
    out = {}
    for t in ("site", "histology"):
        y = reports[t].fillna("").astype(str)
        y = y[y != ""]
        out[f"{t}/unseen"] = float((~y.isin(classes.get(t, []))).mean()) if len(y) else 0.0
    return out


def _drift(bundle: Path, reports: pd.DataFrame) -> dict[str, Any]:
    from kinpath.phenotyping.bundle import load_bundle
    from kinpath.pipelines.batch import LoadedModel, check_drift

    model = LoadedModel(str(bundle), "fold", load_bundle(bundle, precision="fp32"))
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "reports.parquet"
        reports[["report_id", "text"]].to_parquet(src, index=False)
        summary = check_drift(model, src, workers=0)
    return {k: summary.get(k) for k in ("verdict", "alarms", "figures", "limits", "reports")}


def _recalibrated(
    bundle: Path, labels: dict[str, list[str]], reports: pd.DataFrame, n: int, seed: int
) -> dict[str, Any]:
    """Refit the decoder on ``n`` of these reports (whole patients), score the rest with the
    base and the refitted decoder."""
    from kinpath.phenotyping.recalibrate import recalibrate

    chosen = whole_patients(reports, n, np.random.default_rng(seed))
    reviewed = reports[reports["patient_id"].isin(chosen)].copy()
    rest = reports[~reports["patient_id"].isin(chosen)]
    for t, classes in labels.items():  # a code the network cannot score cannot be recalibrated
        if t in reviewed:
            reviewed.loc[~reviewed[t].fillna("").astype(str).isin(classes), t] = ""
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "reviewed.csv"
        reviewed.to_csv(table, index=False)
        recalibrate(bundle, table, Path(tmp) / "bundle")
        after = coding(_scored(Path(tmp) / "bundle", rest), reports)
    before = coding(_scored(bundle, rest), reports)
    return {"reviewed": len(reviewed), "scored": len(rest), "before": before, "after": after}


def evaluate(
    reports: list[Path] | None = None,
    fit_config: Path | None = None,
    out: Path | None = None,
    group_by: Literal["institution"] = "institution",
    institution_column: str | None = None,
    folds: int = 5,
    seed: int = 42,
    overrides: dict[str, Any] | None = None,
    recalibrate_with: list[int] = list(REVIEWED),  # noqa: B006 (jsonargparse reads the default)
    tracking_uri: str | None = None,
    docs: Path | None = None,
    report_only: bool = False,
    rescore: bool = False,
) -> dict[str, Any]:
    """Unseen-institution evaluation: grouped folds, one fit each, drift and recalibration.

    Args:
        reports: Report tables (TCGA barcodes as report ids); their test splits are left out
            (required).
        fit_config: The `lightning fit` config every fold fits (configs/mtcnn-tcga.yaml;
            required).
        out: Folder for the fold tables, the bundles and results.json (resumable; required).
        group_by: What a fold holds out: institution.
        institution_column: The column naming each report's institution (a registry's
            facility code); None: the tissue source site of a TCGA barcode report id.
        folds: How many folds.
        seed: The one seed (folds, reference patients, fits, recalibration sets).
        overrides: `lightning fit` options over the config by dotted name
            ({data.embeddings: runs/tcga/embeddings/word2vec, trainer.max_epochs: 10}).
        recalibrate_with: Reviewed reports per held-out fold for the recalibration figures.
        tracking_uri: MLflow store (default: MLFLOW_TRACKING_URI, else sqlite:///mlruns.db
            in the project folder).
        docs: A documentation page the tables are also written to.
        report_only: Write the page from the folds finished so far (results.json in out),
            fitting nothing: a look at a long evaluation while it runs.
        rescore: Score the finished folds again from their saved bundles (the coding, per
            institution and recalibration figures; not the fits, their metrics or drift); with
            report_only, nothing else.
    """
    from kinpath.phenotyping.store import tracking_uri as resolve
    from kinpath.phenotyping.store import using_store

    missing = [f"--{k}" for k, v in (("reports", reports), ("fit_config", fit_config),
                                       ("out", out)) if not v]  # fmt: skip
    if missing:
        raise InputError(f"missing required option(s): {', '.join(missing)}")
    assert reports is not None and fit_config is not None and out is not None
    store = resolve(tracking_uri)
    out.mkdir(parents=True, exist_ok=True)
    table = pd.concat([pd.concat(list(read_reports(p))) for p in reports], ignore_index=True)
    pool = table[table["split"].isin(["train", "val"])].copy()
    if institution_column is None:
        pool["institution"] = pool["report_id"].map(institution_of)
    elif institution_column not in pool:
        raise InputError(f"no column {institution_column!r} in the report tables")
    else:
        pool["institution"] = pool[institution_column].fillna("").astype(str)
    results_file = out / "results.json"
    results: dict[str, Any] = json.loads(results_file.read_text()) if results_file.exists() else {}
    # the fits' LightningCLI reads MLFLOW_TRACKING_URI; put back as it was afterwards
    with using_store(store):
        for fold in make_folds(pool, folds, seed):
            if fold.key in results and rescore:
                log.info("fold %s: scoring again from its bundle", fold.key)
                bundle = _bundle(results[fold.key]["run"], store, out)
                test = pool[pool["report_id"].isin(fold.test)]
                results[fold.key] |= _analysis(fold, bundle, test, recalibrate_with, seed)
                results_file.write_text(json.dumps(results, indent=1, default=float) + "\n")
            if fold.key in results or report_only:
                continue
            log.info("fold %s: %d test reports from %d institutions", fold.key, len(fold.test),
                     len(fold.institutions))  # fmt: skip
            path = out / "tables" / f"{fold.key}.csv"
            path.parent.mkdir(exist_ok=True)
            fold_table(pool, fold).to_csv(path, index=False)
            run_id = _fit(path, fold, fit_config, dict(overrides or {}), seed)
            bundle = _bundle(run_id, store, out)
            test = pool[pool["report_id"].isin(fold.test)]
            entry: dict[str, Any] = {
                "kind": fold.kind, "run": run_id, "reports": len(test),
                "institutions": list(fold.institutions) if fold.kind == "held-out" else [],
                "metrics": _run_metrics(run_id, store), "drift": _drift(bundle, test),
            } | _analysis(fold, bundle, test, recalibrate_with, seed)  # fmt: skip
            results[fold.key] = entry
            results_file.write_text(json.dumps(results, indent=1, default=float) + "\n")
    from kinpath.pipelines.institutions_report import render

    command = (
        f"kinpath evaluate --reports '[{', '.join(str(p) for p in reports)}]' --fit_config "
        f"{fit_config} --out <folder> --folds {folds} --seed {seed}"
        + (f" --institution_column {institution_column}" if institution_column else "")
        + (f" --overrides '{json.dumps(overrides)}'" if overrides else "")
        + f" --recalibrate_with '{json.dumps(recalibrate_with)}'"
    )
    grouping = (
        f"The column `{institution_column}` names each report's institution."
        if institution_column
        else "One tissue source site code (the barcode's second field) is one institution: no "
        "public table of which codes share an institution was at hand."
    )
    done = f"{len(results)} of {2 * folds} folds" if len(results) < 2 * folds else ""
    # the day the last fold was fitted or scored, not the day a report_only call drew the page
    measured = (dt.date.fromtimestamp(results_file.stat().st_mtime) if results_file.exists()
                else dt.date.today())  # fmt: skip
    page = render(results, {"command": command, "grouping": grouping, "unfinished": done, "machine": machine(),
                            "date": str(measured)})  # fmt: skip
    (out / "institutions.md").write_text(page)
    if docs is not None:
        docs.parent.mkdir(parents=True, exist_ok=True)
        docs.write_text(page)
    print(page)
    return results


def _analysis(
    fold: Fold, bundle: Path, test: pd.DataFrame, recalibrate_with: list[int], seed: int
) -> dict[str, Any]:
    """A fold's decoded figures from its bundle: overall, per institution with 20 or more
    reports, and (held-out folds) before and after recalibrating on its own reports."""
    rows = _scored(bundle, test)
    classes = json.loads((bundle / "label_maps.json").read_text())
    per_site = {
        inst: coding(rows[test["institution"].to_numpy() == inst], test)
        | _unseen(test[test["institution"] == inst], classes)
        | {"reports": float((test["institution"] == inst).sum())}
        for inst in fold.institutions
        if (test["institution"] == inst).sum() >= 20
    }
    out: dict[str, Any] = {"coding": coding(rows, test), "per_institution": per_site}
    if fold.kind == "held-out":
        out["recalibration"] = {
            str(n): _recalibrated(bundle, classes, test, n, seed)
            for n in recalibrate_with
            if n < len(test)
        }
    return out


def _run_metrics(run_id: str, store: str) -> dict[str, float]:
    from mlflow import MlflowClient

    m = MlflowClient(tracking_uri=store).get_run(run_id).data.metrics
    return {
        k[len("test/") :]: v for k, v in m.items() if k.startswith("test/") and k.count("/") == 2
    }
