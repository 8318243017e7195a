"""Benchmark: a constant learning rate with early stopping against a one-cycle schedule.

Fits ``lightning fit -c CONFIG`` with each heads (label-knowledge and plain) two ways, one
after the other, on the same vectors, graph and seed:

* constant: lr 0.001 until early stopping (patience from the config), at most 30 epochs,
  the TCGA config before one-cycle;
* one-cycle: ``model.lr_schedule: one-cycle`` with a peak of 0.002 over 4 epochs (and, for
  the label-knowledge heads, a peak of 0.001 over 4 epochs: the same top rate as constant;
  for the plain heads, also a peak of 0.002 over 6 epochs).

Each fit is an MLflow run in ``--store`` named after its variant and seed; a variant whose
finished run is already there is read, not fitted again, so the fits can be made in one
sitting and the page in another. Prints, per fit, the epochs it ran, its wall time (MLflow
run start to end: data, fit, and the test of the best checkpoint), its median epoch time
(validation to validation: a shared or slower machine shows there) and the validation loss
and macro-F1 per task at its best epoch (lowest validation loss, the checkpoint a fit
keeps), and draws the validation loss per epoch. ``--docs PAGE`` writes the page with the
command, date, machine and commit. Only validation figures are shown: the schedule is tuned
on them, never on a test split.

    python bench/schedule.py --embeddings runs/tcga/embeddings/kg-joint --graph runs/tcga/graph/graph \\
        --docs docs/results/schedule.md

needs the TCGA tables (``../shared/data``) and a run's graph and kg-joint vectors.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("site", "subsite", "laterality", "behavior", "histology", "grade")
# name, heads, schedule, lr, max_epochs
VARIANTS = (
    ("lk-{seed}-const", "label-knowledge", "constant", 0.001, 30),
    ("oc-lk-{seed}-2e3", "label-knowledge", "one-cycle", 0.002, 4),
    ("oc-lk-{seed}-1e3", "label-knowledge", "one-cycle", 0.001, 4),
    ("pl-{seed}-const", "plain", "constant", 0.001, 30),
    ("oc-pl-{seed}-2e3", "plain", "one-cycle", 0.002, 4),
    ("oc-pl-{seed}-2e3-6", "plain", "one-cycle", 0.002, 6),
)


def fit(name: str, heads: str, schedule: str, lr: float, epochs: int, a: Any) -> None:
    cmd = [
        "lightning", "fit", "-c", str(a.config), "--model.heads", heads,
        "--data.embeddings", str(a.embeddings), "--data.graph", str(a.graph),
        "--seed_everything", str(a.seed), "--model.lr_schedule", schedule, "--model.lr", str(lr),
        "--trainer.max_epochs", str(epochs), "--trainer.deterministic", "warn",
        "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.run_name", name,
    ]  # fmt: skip
    print(f"fitting {name}: {shlex.join(cmd)}", flush=True)
    env = {**os.environ, "MLFLOW_TRACKING_URI": a.uri}
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)


def read(client: Any, name: str) -> dict[str, Any] | None:
    runs = [
        r
        for e in client.search_experiments()
        for r in client.search_runs([e.experiment_id], f"attributes.run_name = '{name}'")
        if r.info.status == "FINISHED"
    ]
    if not runs:
        return None
    r = max(runs, key=lambda r: r.info.start_time)
    rid = r.info.run_id
    history = sorted(client.get_metric_history(rid, "val/loss"), key=lambda m: m.step)
    loss = [m.value for m in history]
    # an epoch's time: from the previous validation (the run's start for the first) to its own
    ends = [r.info.start_time, *(m.timestamp for m in history)]
    epoch_s = sorted((b - a) / 1000 for a, b in itertools.pairwise(ends))
    best = min(range(len(loss)), key=loss.__getitem__)
    f1 = {}
    for t in TASKS:
        hist = sorted(client.get_metric_history(rid, f"val/{t}/macro_f1"), key=lambda m: m.step)
        f1[t] = hist[best].value if len(hist) > best else float("nan")
    return {"loss": loss, "best": best, "f1": f1,
            "minutes": (r.info.end_time - r.info.start_time) / 60000,
            "epoch_s": epoch_s[len(epoch_s) // 2]}  # fmt: skip


def render(got: dict[str, dict[str, Any]], a: Any, plot: Path | None) -> str:
    head = ["fit", "schedule", "epochs run", "best epoch", "wall time", "median epoch",
            "val loss", *TASKS]  # fmt: skip
    lines = [
        "# Constant learning rate or one-cycle",
        "",
        f"`{Path(a.config).name}` on the TCGA tables, seed {a.seed}, the vectors "
        f"`{a.embeddings}` and graph `{a.graph}`; the fits one after the other on this "
        "machine. Wall time is the MLflow run's, start to end (reading the data, the fit, "
        "and the test of the best checkpoint); an epoch's time runs from one validation to the "
        "next (from the run's start for the first), and its median shows how fast the machine "
        "ran during the fit: a shared or slower machine makes a longer epoch, and this "
        "virtual machine's speed changes by the hour, so wall times compare only roughly even "
        "within one sitting: the epochs a fit runs are the steadier measure of its cost. Validation loss and macro-F1 per task are "
        "those of the best epoch (lowest validation loss), the checkpoint the fit keeps.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for name, heads, schedule, lr, epochs in VARIANTS:
        key = name.format(seed=a.seed)
        if key not in got:
            continue
        g = got[key]
        sched = f"constant {lr:g}, early stopping" if schedule == "constant" else (
            f"one-cycle, peak {lr:g}, {epochs} epochs")  # fmt: skip
        cells = [f"{heads} ({key})", sched, str(len(g["loss"])), str(g["best"] + 1),
                 f"{g['minutes']:.1f} min", f"{g['epoch_s']:.0f} s", f"{g['loss'][g['best']]:.3f}",
                 *(f"{g['f1'][t]:.3f}" for t in TASKS)]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    if plot is not None:
        lines += ["", f"![validation loss per epoch]({plot.name})"]
    return "\n".join(lines) + "\n"


def draw(got: dict[str, dict[str, Any]], seed: int, dest: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, heads in zip(axes, ("label-knowledge", "plain"), strict=True):
        for name, h, *_ in VARIANTS:
            key = name.format(seed=seed)
            if h != heads or key not in got:
                continue
            loss = got[key]["loss"]
            ax.plot(range(1, len(loss) + 1), loss, marker="o", label=key)
        ax.set_title(f"{heads} heads")
        ax.set_xlabel("epoch")
        ax.legend()
    axes[0].set_ylabel("validation loss")
    fig.tight_layout()
    fig.savefig(dest, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "configs/mtcnn-tcga.yaml")
    ap.add_argument("--embeddings", type=Path, default=ROOT / "runs/tcga/embeddings/kg-joint")
    ap.add_argument("--graph", type=Path, default=ROOT / "runs/tcga/graph/graph")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--store", type=Path, default=ROOT / "runs/schedule/mlruns.db",
                    help="the MLflow store the fits are made in and read from")  # fmt: skip
    ap.add_argument("--docs", type=Path, default=None, help="also write the page (and its plot)")
    ap.add_argument("--no-fit", action="store_true",
                    help="only read the store: variants without a finished run are left out")  # fmt: skip
    a = ap.parse_args()
    for p in (a.embeddings, a.graph):
        if not p.exists():
            sys.exit(f"{p} is missing: make it with kinpath run -c configs/tcga.yaml")
    a.store = a.store.resolve()
    a.store.parent.mkdir(parents=True, exist_ok=True)
    a.uri = f"sqlite:///{a.store}"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(a.uri)
    got: dict[str, dict[str, Any]] = {}
    for name, heads, schedule, lr, epochs in VARIANTS:
        key = name.format(seed=a.seed)
        if (r := read(client, key)) is None:
            if a.no_fit:
                print(f"{key}: no finished run in {a.uri}, left out")
                continue
            fit(key, heads, schedule, lr, epochs, a)
            r = read(client, key)
        assert r is not None, f"{key}: the fit finished but its run is not in {a.uri}"
        got[key] = r
    plot = a.docs.with_suffix("") / "validation-loss.png" if a.docs else None
    page = render(got, a, plot)
    print(page)
    if a.docs is not None and plot is not None:
        from kinpath.pipelines.report import publish_page

        plot.parent.mkdir(parents=True, exist_ok=True)
        draw(got, a.seed, plot)
        page = page.replace(f"]({plot.name})", f"]({plot.parent.name}/{plot.name})")
        print(f"docs: {publish_page(page, a.docs, 'python ' + shlex.join(sys.argv))}")


if __name__ == "__main__":
    main()
