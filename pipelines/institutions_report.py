"""The unseen-institution page: the folds' figures, the drift confusion table and the
recalibration table (:mod:`kinpath.pipelines.institutions` makes the figures)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

F1_TASKS = ["site", "subsite", "laterality", "histology", "grade"]
CODED_TASKS = ["site", "subsite", "laterality", "behavior", "histology", "grade"]
ENOUGH = 20  # a task's accuracy counts for the outcome where it coded this many reports
BROKEN = 0.95
PROMISE = 0.97


def _f(x: float | None, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{100 * x:.1f}%" if pct else f"{x:.3f}"


def _stat(values: list[float], pct: bool = False) -> str:
    v = [x for x in values if x is not None and not math.isnan(x)]
    if not v:
        return "—"
    m, s = float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    return f"{100 * m:.1f} ± {100 * s:.1f}%" if pct else f"{m:.3f} ± {s:.3f}"


def _row_cells(r: dict[str, Any]) -> list[str]:
    m, c = r["metrics"], r["coding"]
    return [
        *(_f(m.get(f"{t}/macro_f1")) for t in F1_TASKS),
        f"{_f(c.get('site/coverage'), True)} at {_f(c.get('site/accuracy'), True)}",
        f"{_f(c.get('histology/coverage'), True)} at {_f(c.get('histology/accuracy'), True)}",
        _f(c.get("all/accuracy"), True),
    ]


def worst(r: dict[str, Any]) -> tuple[str, float] | None:
    """The task with the lowest accuracy of what it auto-coded, among the tasks that coded at
    least :data:`ENOUGH` of the fold's reports (share × reports)."""
    c = r["coding"]
    accs = [(t, c[f"{t}/accuracy"]) for t in CODED_TASKS
            if c.get(f"{t}/coverage", 0.0) * r["reports"] >= ENOUGH
            and not math.isnan(c.get(f"{t}/accuracy", math.nan))]  # fmt: skip
    return min(accs, key=lambda x: x[1]) if accs else None


OUTCOMES = ("broken", "below the promise", "kept the promise")


def outcome(r: dict[str, Any]) -> str:
    """What a fold's least accurate task did: *broken* below :data:`BROKEN`, *below the
    promise* from there to :data:`PROMISE`, else *kept the promise*."""
    w = worst(r)
    if w is None or w[1] >= PROMISE:
        return OUTCOMES[2]
    return OUTCOMES[0] if w[1] < BROKEN else OUTCOMES[1]


def _flagged(table: dict[str, dict[str, int]], outcomes: tuple[str, ...]) -> str:
    folds = sum(sum(table[o].values()) for o in outcomes)
    flagged = sum(table[o].get("warn", 0) + table[o].get("stop", 0) for o in outcomes)
    return f"{flagged} of {folds}"


def render(results: dict[str, Any], run: dict[str, Any]) -> str:
    folds = sorted(results, key=lambda k: (results[k]["kind"], int(k.rsplit("-", 1)[1])))
    head = ("| fold | test reports | " + " | ".join(f"{t} macro-F1" for t in F1_TASKS)
            + " | site auto-coded at accuracy | histology auto-coded at accuracy "
            "| accuracy of all auto-coded |")  # fmt: skip
    lines = [
        "# Unseen institutions",
        "",
        f"Measured {run['date']} on {run['machine']} with `{run['command']}`. "
        f"{run['grouping']} Held-out folds test on institutions the fit "
        "never saw; each reference fold tests on as many reports of random patients from every "
        "institution. Train and validation rows of the report tables only; their test splits are "
        "untouched. Auto-coded shares and accuracies: kinpath's decoded output on the fold's "
        "test reports, fp32."
        + (f" **Partial: {run['unfinished']} finished.**" if run.get("unfinished") else ""),
        "",
        "## The folds",
        "",
        head,
        "|---" * (len(F1_TASKS) + 5) + "|",
    ]
    for k in folds:
        r = results[k]
        lines.append(f"| {k} | {r['reports']} | " + " | ".join(_row_cells(r)) + " |")
    for kind in ("held-out", "reference"):
        rs = [results[k] for k in folds if results[k]["kind"] == kind]
        if not rs:
            continue
        cells = [_stat([r["metrics"].get(f"{t}/macro_f1") for r in rs]) for t in F1_TASKS]
        cells += [
            f"{_stat([r['coding'].get('site/coverage') for r in rs], True)} at "
            f"{_stat([r['coding'].get('site/accuracy') for r in rs], True)}",
            f"{_stat([r['coding'].get('histology/coverage') for r in rs], True)} at "
            f"{_stat([r['coding'].get('histology/accuracy') for r in rs], True)}",
            _stat([r["coding"].get("all/accuracy") for r in rs], True),
        ]
        lines.append(f"| **{kind}: mean ± sd** | {sum(r['reports'] for r in rs)} | "
                     + " | ".join(cells) + " |")  # fmt: skip
    lines += ["", "## Where the 97% promise breaks", "",
              "Institutions with 20 or more held-out reports whose auto-coded site or histology "
              "accuracy fell below 97%, with the share of their labelled codes the model has no "
              "class for (unseen codes).", "",
              "| institution | fold | reports | site auto-coded at accuracy | histology auto-coded "
              "at accuracy | unseen site codes | unseen histology codes |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for k in folds:
        if results[k]["kind"] != "held-out":
            continue
        for inst, c in sorted(results[k]["per_institution"].items()):
            failing = [t for t in ("site", "histology")
                      if (c.get(f"{t}/accuracy") or 1.0) < PROMISE]  # fmt: skip
            if failing:
                lines.append(
                    f"| {inst} | {k} | {int(c.get('reports', 0)) or '—'} | "
                    f"{_f(c.get('site/coverage'), True)} at {_f(c.get('site/accuracy'), True)} | "
                    f"{_f(c.get('histology/coverage'), True)} at "
                    f"{_f(c.get('histology/accuracy'), True)} | {_f(c.get('site/unseen'), True)} | "
                    f"{_f(c.get('histology/unseen'), True)} |"
                )
    lines += ["", "## Drift check against the outcome", "",
              f"A fold's outcome is *broken* when the accuracy of what some task auto-coded fell "
              f"below {100 * BROKEN:.0f}% (tasks that auto-coded at least {ENOUGH} of the fold's "
              f"reports), *below the promise* when its least accurate task was at {100 * BROKEN:.0f}"
              f"-{100 * PROMISE:.0f}%, and *kept the promise* otherwise. Goal: every broken fold "
              "flagged (`warn` or `stop`), and no more than one in five healthy folds.", "",
              "| outcome | ok | warn | stop |", "|---|---|---|---|"]  # fmt: skip
    table: dict[str, dict[str, int]] = {o: {} for o in OUTCOMES}
    for k in folds:
        v, counts = results[k]["drift"].get("verdict", "unknown"), table[outcome(results[k])]
        counts[v] = counts.get(v, 0) + 1
    for o, counts in table.items():
        lines.append(f"| {o} | " + " | ".join(str(counts.get(v, 0)) for v in
                                               ("ok", "warn", "stop")) + " |")  # fmt: skip
    reference = [k for k in folds if results[k]["kind"] == "reference"]
    reference_flagged = sum(results[k]["drift"].get("verdict") in ("warn", "stop")
                            for k in reference)  # fmt: skip
    lines += ["", f"Broken folds flagged: {_flagged(table, OUTCOMES[:1])}. Folds that kept the "
              f"promise flagged: {_flagged(table, OUTCOMES[2:])}. Folds that were not broken "
              f"flagged: {_flagged(table, OUTCOMES[1:])}, counting those below the promise as "
              f"healthy. In-distribution (reference) folds flagged: {reference_flagged} of "
              f"{len(reference)}.", "",
              "| fold | least accurate task | outcome | verdict | figures beyond their limit |",
              "|---|---|---|---|---|"]  # fmt: skip
    for k in folds:
        r = results[k]
        w = worst(r)
        least = f"{w[0]} {_f(w[1], True)}" if w else "—"
        lines.append(f"| {k} | {least} | {outcome(r)} | "
                     f"{r['drift'].get('verdict')} | {', '.join(r['drift'].get('alarms') or []) or '—'} |")  # fmt: skip
    lines += ["", "## Recalibration on a held-out fold's own reports", "",
              "The decoder refitted (`kinpath registry recalibrate`) on N reports of the fold's "
              "institutions (whole patients), both decoders scoring the fold's other reports. "
              "Goal: accuracy of what is auto-coded ≥ 97% again; the cost is the share it "
              "auto-codes.", "",
              "| fold | N reviewed | scored | all fields: auto-coded before → after | accuracy "
              "before → after | site accuracy before → after | histology accuracy before → after |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for k in folds:
        for _, rc in sorted(
            (results[k].get("recalibration") or {}).items(), key=lambda x: int(x[0])
        ):
            b, a = rc["before"], rc["after"]
            lines.append(
                f"| {k} | {rc['reviewed']} | {rc['scored']} | "
                f"{int(b.get('all/coded', 0))} → {int(a.get('all/coded', 0))} fields | "
                f"{_f(b.get('all/accuracy'), True)} → {_f(a.get('all/accuracy'), True)} | "
                f"{_f(b.get('site/accuracy'), True)} → {_f(a.get('site/accuracy'), True)} | "
                f"{_f(b.get('histology/accuracy'), True)} → {_f(a.get('histology/accuracy'), True)} |"
            )
    return "\n".join(lines) + "\n"
