"""The results table's arithmetic and Markdown: mean ± standard deviation over seeds, a row per
method. Kept apart from :mod:`kinpath.phenotyping.compare` (which fits) so that the pipeline's report
and ``kinpath run --help`` need no torch or Lightning."""

from __future__ import annotations

import numpy as np


def aggregate_seeds(runs: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and standard deviation over fits of the same config with different seeds
    (the deviation only for keys every fit has, and only with two fits or more)."""
    keys = set().union(*runs) if runs else set()
    mean, spread = {}, {}
    for k in sorted(keys):
        vals = [r[k] for r in runs if k in r]
        mean[k] = float(np.mean(vals))
        if len(vals) == len(runs) >= 2:
            spread[k] = float(np.std(vals, ddof=1))
    return mean, spread


def method_table(
    results: dict[str, dict[str, float]],
    tasks: list[str],
    prefix: str = "test",
    spread: dict[str, dict[str, float]] | None = None,
) -> str:
    """Markdown: a row per method; per task ``micro-F1 / macro-F1 / auto-coded``, then the
    macro-F1 over codes with fewer than ten training reports per task that has them.
    ``spread``: per method, the standard deviation over seeds, shown after macro-F1."""
    spread = spread or {}
    rare = [t for t in tasks if any(f"{prefix}/{t}/rare_macro_f1" in r for r in results.values())]
    head = ["method", *tasks, *(f"{t}: rare codes" for t in rare)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def num(m: str, key: str) -> str:
        v = results[m].get(key)
        if v is None:
            return "—"
        sd = spread.get(m, {}).get(key)
        return f"{v:.3f}" + (f" ± {sd:.3f}" if sd is not None else "")

    for m in results:
        cells = [m]
        for t in tasks:
            cells.append(
                " / ".join(
                    num(m, f"{prefix}/{t}/{k}") for k in ("micro_f1", "macro_f1", "coverage")
                )
            )
        cells += [num(m, f"{prefix}/{t}/rare_macro_f1") for t in rare]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
