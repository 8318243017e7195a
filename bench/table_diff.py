"""Compare the per-split test tables of two results pages, cell by cell, against the seed spread.

Reads the method × task tables of each test split from two pages that ``kinpath run`` wrote
(``runs/*/report/results.md``, ``docs/results/tcga-run.md``, or a page quoting them under
headings ``## Test split NAME`` or a line starting with ```NAME:test```), and prints, per
split, method and task, the macro-F1 (or micro-F1) before → after and the change. A change
is flagged when it exceeds twice the seed spread: the row's own standard deviation over seeds
where either page fitted it with several (the larger of the two), else the largest standard
deviation of any several-seed row of that split and task on either page.

    python bench/table_diff.py docs/results/tcga.md docs/results/tcga-run.md
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

TASKS = ("site", "subsite", "laterality", "behavior", "histology", "grade")
METRICS = {"micro": 0, "macro": 1}
Cell = tuple[float, float | None]  # the value and its standard deviation over seeds, if any


def read_tables(page: Path) -> dict[tuple[str, str, str], list[Cell]]:
    """(split, method, task) → the cell's figures (micro-F1, macro-F1, auto-coded)."""
    out: dict[tuple[str, str, str], list[Cell]] = {}
    split = None
    for line in page.read_text().splitlines():
        heading = re.match(r"^## Test split (\S+)$", line) or re.match(r"^`([^`:]+):test`", line)
        if heading:
            split = heading.group(1)
            continue
        if line.startswith("## "):
            split = None
        if split is None or not line.startswith("| ") or line.startswith(("| method", "|---")):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        for task, cell in zip(TASKS, cells[1:7], strict=True):
            figures = []
            for part in cell.split(" / "):
                m = re.match(r"([\d.]+)(?: ± ([\d.]+))?", part.strip())
                if m is None:
                    raise ValueError(f"{page}: cannot read the cell {cell!r} of {cells[0]}")
                figures.append((float(m.group(1)), float(m.group(2)) if m.group(2) else None))
            out[(split, cells[0], task)] = figures
    if not out:
        raise ValueError(f"{page}: no test-split tables found")
    return out


def diff(before: Path, after: Path, metric: str = "macro") -> list[tuple]:
    """Rows (split, method, task, before, after, change, limit, outside) of cells on both pages."""
    i = METRICS[metric]
    a, b = read_tables(before), read_tables(after)
    spread: dict[tuple[str, str], float] = {}
    for (split, _, task), figures in [*a.items(), *b.items()]:
        sd = figures[i][1]
        if sd is not None:
            spread[(split, task)] = max(spread.get((split, task), 0.0), sd)
    rows = []
    for key in sorted(set(a) & set(b)):
        split, method, task = key
        (va, sa), (vb, sb) = a[key][i], b[key][i]
        own = [s for s in (sa, sb) if s is not None]
        limit = 2 * (max(own) if own else spread.get((split, task), 0.0))
        rows.append((split, method, task, va, vb, vb - va, limit, abs(vb - va) > limit))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--metric", choices=sorted(METRICS), default="macro")
    ap.add_argument("--outside", action="store_true", help="only the cells outside the spread")
    args = ap.parse_args()
    rows = diff(args.before, args.after, args.metric)
    print(f"| split | method | task | {args.metric}-F1 before | after | change | 2 × spread |")
    print("|---|---|---|---|---|---|---|")
    for split, method, task, va, vb, d, limit, outside in rows:
        if outside or not args.outside:
            mark = " **outside**" if outside else ""
            print(
                f"| {split} | {method} | {task} | {va:.3f} | {vb:.3f} | {d:+.3f}{mark} | {limit:.3f} |"
            )
    n = sum(r[-1] for r in rows)
    print(f"\n{n} of {len(rows)} cells moved by more than twice the seed spread.")


if __name__ == "__main__":
    main()
