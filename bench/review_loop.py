"""Does the review queue's order pay? A simulation on the shared TCGA tables, the labels playing
the registrar (issue 22, §4).

1. Split ``tcga-ocr``'s train split in two halves by patient: one half trains with
   ``tcga-reports`` (both val splits select, both test splits are reported), the other is
   the *pool*, tonight's unreviewed reports.
2. Fit the base model (``lightning fit -c configs/mtcnn-tcga.yaml``) and score the pool.
3. For N in ``--n`` and each seed: "review" N pool reports, chosen (a) in the queue's order
   (:mod:`kinpath.pipelines.review.queue`: most expected corrections first), (b) at random; add them
   with their true labels as a third training table; fit again with that seed.
4. Per arm: test macro-F1 per task and split, the share of each task auto-coded and its
   accuracy (the decoder's ≥ 97% promise), and the registrar's workload: fields a human
   must decide per 100 test reports.

Writes ``results.json`` and ``review-loop.md`` (a table) into ``--out``, and, with
``--docs``, the table into that page of the documentation. The fits run one after
another, each in its own process (hours on 2 cores: run it alone, with a log)::

    python bench/review_loop.py --embeddings runs/tcga/emb/word2vec --graph runs/tcga/nci \\
        --out runs/review-loop --docs docs/results/review-loop.md > runs/review-loop.log 2>&1
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from kinpath.pipelines.environment import machine

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
TASKS = ["site", "subsite", "laterality", "behavior", "histology", "grade"]
SPLITS = ["tcga-reports", "tcga-ocr"]


def log(msg: str) -> None:
    print(f"{dt.datetime.now():%H:%M:%S} {msg}", flush=True)


def halves(ocr: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``tcga-ocr`` without the pool, and the pool: half of its train patients (by a hash of
    the patient id, so the same on every run)."""
    h = ocr["patient_id"].map(lambda p: int(hashlib.sha256(p.encode()).hexdigest(), 16) % 2)
    pool = (ocr["split"] == "train") & (h == 1)
    return ocr[~pool], ocr[pool]


def fit(tables: list[Path], seed: int, args: argparse.Namespace, log_to: Path) -> str:
    """One ``lightning fit``; returns its MLflow run id."""
    cmd = [
        "lightning", "fit", "-c", str(ROOT / "configs" / "mtcnn-tcga.yaml"),
        "--data.data", json.dumps([str(t) for t in tables]),
        "--data.embeddings", str(args.embeddings), "--data.graph", str(args.graph),
        "--data.valid_combinations", str(SHARED / "registry" / "seer-site-histology-valid.csv"),
        "--seed_everything", str(seed), "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    if args.max_epochs is not None:  # else the config's: the length of its one-cycle schedule
        cmd += ["--trainer.max_epochs", str(args.max_epochs)]
    env = os.environ | {"MLFLOW_TRACKING_URI": args.store}
    start = time.time()
    with open(log_to, "w") as out:
        subprocess.run(cmd, cwd=args.out, env=env, stdout=out, stderr=subprocess.STDOUT, check=True)
    run = re.search(r"MLflow run ([0-9a-f]{32})", log_to.read_text())
    if run is None:
        raise RuntimeError(f"no MLflow run id in {log_to}")
    log(f"fit {log_to.stem}: run {run.group(1)} in {time.time() - start:.0f} s")
    return run.group(1)


def bundle_of(run_id: str, store: str, out: Path) -> Path:
    import mlflow

    dest = out / "bundles" / run_id
    if not (dest / "bundle" / "network.json").exists():
        dest.mkdir(parents=True, exist_ok=True)
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="bundle", dst_path=str(dest), tracking_uri=store
        )
    return dest / "bundle"


def scored(bundle: Path, table: pd.DataFrame) -> pd.DataFrame:
    """``kinpath predict``'s columns for these reports (fp32)."""
    from kinpath.phenotyping.bundle import encode, load_bundle
    from kinpath.pipelines.model import predictions

    b = load_bundle(bundle, precision="fp32")
    return predictions(b, encode(b, table["text"].tolist()), table["report_id"].tolist())


def measure(run_id: str, args: argparse.Namespace, tests: dict[str, pd.DataFrame]) -> dict:
    """Per split: the run's macro-F1, auto-coded share and accuracy per task; the workload."""
    from mlflow import MlflowClient

    metrics = MlflowClient(tracking_uri=args.store).get_run(run_id).data.metrics
    out: dict = {}
    bundle = bundle_of(run_id, args.store, args.out)
    for split in SPLITS:
        s = {
            f"{t}/{k}": metrics.get(f"test/{split}/{t}/{k}")
            for t in TASKS
            for k in ("macro_f1", "coverage", "covered_accuracy")
        }
        rows = scored(bundle, tests[split])
        abstained = sum(rows[f"{t}_abstain"].astype(bool).sum() for t in TASKS)
        s["workload_per_100"] = 100.0 * float(abstained) / len(rows)
        out[split] = s
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--embeddings", type=Path, required=True)
    ap.add_argument("--graph", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, nargs="+", default=[200, 500])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--max-epochs", type=int, default=None,
                    help="each fit's epochs (default: the config's)")  # fmt: skip
    ap.add_argument("--docs", type=Path, default=None)
    args = ap.parse_args()
    if not SHARED.exists():
        sys.exit(f"needs the shared TCGA tables at {SHARED}")
    args.out = args.out.resolve()
    args.embeddings, args.graph = args.embeddings.resolve(), args.graph.resolve()
    args.store = f"sqlite:///{args.out / 'mlruns.db'}"
    (args.out / "tables").mkdir(parents=True, exist_ok=True)
    (args.out / "logs").mkdir(exist_ok=True)
    results_file = args.out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}

    reports = pd.read_csv(SHARED / "tcga-reports" / "reports.csv", dtype=str).fillna("")
    ocr = pd.read_csv(SHARED / "tcga-ocr" / "reports.csv", dtype=str).fillna("")
    kept, pool = halves(ocr)
    base_tables = [args.out / "tables" / "tcga-reports.csv", args.out / "tables" / "tcga-ocr.csv"]
    reports.to_csv(base_tables[0], index=False)
    kept.to_csv(base_tables[1], index=False)
    tests = {
        "tcga-reports": reports[reports["split"] == "test"],
        "tcga-ocr": kept[kept["split"] == "test"],
    }
    log(f"base: {len(reports)} + {len(kept)} reports; pool: {len(pool)} reports")

    def save() -> None:
        results_file.write_text(json.dumps(results, indent=1) + "\n")

    if "base" not in results:
        run = fit(base_tables, args.seeds[0], args, args.out / "logs" / "base.log")
        results["base"] = {"run": run, "seed": args.seeds[0], **measure(run, args, tests)}
        save()
    from kinpath.pipelines.review.queue import ordered

    rows = scored(bundle_of(results["base"]["run"], args.store, args.out), pool)
    rows.insert(0, "record", range(len(rows)))
    queue = [i.record for i in ordered(rows.to_dict("records"), TASKS)]
    log(f"queue: {len(queue)} of {len(pool)} pool reports have a field to review")
    for n in args.n:
        for seed in args.seeds:
            for arm in ("queue", "random"):
                key = f"{arm}/{n}/{seed}"
                if key in results:
                    continue
                if arm == "queue":
                    chosen = queue[:n]
                else:
                    chosen = list(np.random.default_rng(seed).choice(len(pool), n, replace=False))
                reviewed = pool.iloc[sorted(chosen)].assign(split="train")
                table = args.out / "tables" / f"reviewed-{arm}-{n}-{seed}" / "reviewed.csv"
                table.parent.mkdir(exist_ok=True)
                reviewed.to_csv(table, index=False)
                run = fit(
                    [*base_tables, table], seed, args, args.out / "logs" / f"{arm}-{n}-{seed}.log"
                )
                results[key] = {"run": run, "seed": seed, **measure(run, args, tests)}
                save()
    table_md = render(results, args)
    (args.out / "review-loop.md").write_text(table_md)
    if args.docs is not None:
        args.docs.parent.mkdir(parents=True, exist_ok=True)
        args.docs.write_text(table_md)
    print(table_md)


def _stat(values: list[float | None]) -> str:
    v = [x for x in values if x is not None]
    if not v:
        return "—"
    if len(v) == 1:
        return f"{v[0]:.3f}"
    return f"{np.mean(v):.3f} ± {np.std(v, ddof=1):.3f}"


def _accuracy(results: dict, keys: list[str], split: str, task: str) -> str:
    """The accuracy of what is auto-coded, over the seeds that auto-code anything (an
    accuracy over nothing coded is no accuracy)."""
    vals = [results[k][split].get(f"{task}/covered_accuracy") for k in keys
            if (results[k][split].get(f"{task}/coverage") or 0) > 0]  # fmt: skip
    if len(keys) > 1 and len(vals) < len(keys):
        return f"{_stat(vals)} ({len(vals)} of {len(keys)} seeds code any)"
    return _stat(vals)


def _fields_coded(results: dict, key: str, split: str) -> float:
    """Share of the test reports' fields auto-coded: 1 - the fields to decide per report."""
    return 1.0 - results[key][split]["workload_per_100"] / (100.0 * len(TASKS))


def _versus(results: dict, split: str, n: int, figure: str) -> str:
    """Queue against random on one figure: the difference of the means and the spread."""

    def vals(arm: str) -> list[float]:
        keys = [k for k in results if k.startswith(f"{arm}/{n}/")]
        if figure == "fields auto-coded":
            return [_fields_coded(results, k, split) for k in keys]
        return [results[k][split][figure] for k in keys]

    q, r = vals("queue"), vals("random")
    if len(q) < 2 or len(r) < 2:
        return "too few seeds"
    diff = float(np.mean(q) - np.mean(r))
    spread = max(float(np.std(q, ddof=1)), float(np.std(r, ddof=1)))
    word = ("beats random by more than the spread" if diff > spread else
            "below random by more than the spread" if -diff > spread else "within the spread")  # fmt: skip
    return f"{diff:+.3f} (spread {spread:.3f}): {word}"


def render(results: dict, args: argparse.Namespace) -> str:
    cols = [("histology macro-F1", "histology/macro_f1"), ("mean macro-F1", None),
            ("histology auto-coded", "histology/coverage"),
            ("its accuracy", "accuracy"),
            ("site auto-coded", "site/coverage"), ("fields to decide /100", "workload_per_100")]  # fmt: skip
    lines = [
        "# The review loop: queue order against random",
        "",
        f"Measured {dt.date.today()} on {machine()} with",
        "`python bench/review_loop.py --embeddings <word2vec vectors> --graph <NCI graph> "
        f"--out <folder> --n {' '.join(map(str, args.n))} --seeds {' '.join(map(str, args.seeds))} "
        + (f"--max-epochs {args.max_epochs}" if args.max_epochs is not None else "")
        + "`: `configs/mtcnn-tcga.yaml` (plain heads, word2vec "
        "vectors), trained on `tcga-reports` and half of `tcga-ocr`'s train patients; N reviewed "
        "reports of the other half added with their true labels. Mean ± standard deviation over "
        "the seeds (the queue arm reviews the same reports for every seed; the random arm draws "
        "anew per seed). Auto-coded: the share of the test split's reports whose field the "
        "decoder emits; its accuracy: over the seeds that auto-code any histology. Fields to "
        "decide: the abstained fields (of six) per 100 test reports, the registrar's workload.",
        "",
    ]
    for split in SPLITS:
        lines += [f"## Test split `{split}`", "",
                  "| arm | N | seeds | " + " | ".join(c for c, _ in cols) + " |",
                  "|---|---|---|" + "---|" * len(cols)]  # fmt: skip
        arms = [("base", 0, ["base"])]
        for n in args.n:
            for arm in ("queue", "random"):
                arms.append((arm, n, [k for k in results if k.startswith(f"{arm}/{n}/")]))
        for arm, n, keys in arms:
            if not keys:
                continue
            cells = []
            for _, key in cols:
                if key is None:
                    vals = [np.mean([results[k][split][f"{t}/macro_f1"] for t in TASKS
                                     if results[k][split].get(f"{t}/macro_f1") is not None])
                            for k in keys]  # fmt: skip
                    cells.append(_stat(vals))
                elif key == "accuracy":
                    cells.append(_accuracy(results, keys, split, "histology"))
                else:
                    cells.append(_stat([results[k][split].get(key) for k in keys]))
            lines.append(f"| {arm} | {n} | {len(keys)} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Against the goal", "",
              "The goal: the queue's order beats random by more than the seed spread on "
              "histology macro-F1 and on the share auto-coded. Queue mean minus random mean; "
              "the spread is the larger of the two arms' standard deviations.", "",
              "| test split | N | histology macro-F1 | histology auto-coded | fields auto-coded |",
              "|---|---|---|---|---|"]  # fmt: skip
    for split in SPLITS:
        for n in args.n:
            cells = [_versus(results, split, n, f) for f in
                     ("histology/macro_f1", "histology/coverage", "fields auto-coded")]  # fmt: skip
            lines.append(f"| {split} | {n} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
