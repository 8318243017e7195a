"""Compare the validation figures of two ``kinpath run`` work folders, fit by fit.

For every ``fit-*`` stage the two folders share, the MLflow run each recorded: its lowest
validation loss and, at that epoch (the checkpoint a fit keeps), each task's validation
macro-F1. Then, per method fitted with several seeds on both sides, the mean ± standard
deviation over seeds, before and after, with the change flagged where it exceeds twice the
larger of the two standard deviations: the rule by which a training lever is kept (issue 25).
Validation only: the test split is for reporting, not for choosing.

    python bench/val_diff.py runs/tcga runs/tcga-auto
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

TASKS = ("site", "subsite", "laterality", "behavior", "histology", "grade")
FIGURES = ("loss", *TASKS)


def fits(work: Path) -> dict[str, str]:
    """Fit stage name → its MLflow run id, from each stage's stage.json."""
    out = {}
    for f in sorted(work.glob("fit-*/stage.json")):
        out[f.parent.name] = json.loads(f.read_text())["output"]["run_id"]
    if not out:
        raise SystemExit(f"{work}: no fit stages (fit-*/stage.json)")
    return out


def at_best(client: MlflowClient, run_id: str) -> dict[str, float]:
    """The run's lowest val/loss and each task's val macro-F1 at that epoch."""
    history = client.get_metric_history(run_id, "val/loss")
    best = min(history, key=lambda m: (m.value, m.step))
    out = {"loss": best.value}
    for t in TASKS:
        steps = {m.step: m.value for m in client.get_metric_history(run_id, f"val/{t}/macro_f1")}
        out[t] = steps[best.step]
    return out


def method(stage: str) -> tuple[str, int]:
    """``fit-kg-joint-label-knowledge-43`` → (``kg-joint-label-knowledge``, 43)."""
    m = re.fullmatch(r"fit-(.+)-(\d+)", stage)
    if m is None:
        raise ValueError(f"not a fit stage: {stage}")
    return m.group(1), int(m.group(2))


def main() -> None:
    import mlflow

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--tracking-uri", default="sqlite:///mlruns.db")
    a = ap.parse_args()
    client = mlflow.MlflowClient(a.tracking_uri)
    before, after = fits(a.before), fits(a.after)
    shared = [s for s in before if s in after]
    got = {(side, s): at_best(client, runs[s]) for side, runs in (("b", before), ("a", after))
           for s in shared}  # fmt: skip
    print("| fit | " + " | ".join(f"{f} before / after" for f in FIGURES) + " |")
    print("|---" * (len(FIGURES) + 1) + "|")
    for s in shared:
        cells = [f"{got[('b', s)][f]:.3f} / {got[('a', s)][f]:.3f}" for f in FIGURES]
        print(f"| {s} | " + " | ".join(cells) + " |")
    seeds: dict[str, list[str]] = defaultdict(list)
    for s in shared:
        seeds[method(s)[0]].append(s)
    outside = 0
    print("\n| method (seeds) | figure | before | after | change | 2 × spread |")
    print("|---|---|---|---|---|---|")
    for name, stages in seeds.items():
        if len(stages) < 2:
            continue
        for f in FIGURES:
            b = [got[("b", s)][f] for s in stages]
            v = [got[("a", s)][f] for s in stages]
            sb, sa = statistics.stdev(b), statistics.stdev(v)
            change, limit = statistics.mean(v) - statistics.mean(b), 2 * max(sb, sa)
            flag = abs(change) > limit
            outside += flag
            print(f"| {name} ({', '.join(str(method(s)[1]) for s in stages)}) | {f} | "
                  f"{statistics.mean(b):.3f} ± {sb:.3f} | {statistics.mean(v):.3f} ± {sa:.3f} | "
                  f"{change:+.3f}{' **outside**' if flag else ''} | {limit:.3f} |")  # fmt: skip
    print(f"\n{outside} several-seed figures moved by more than twice the seed spread.")


if __name__ == "__main__":
    main()
