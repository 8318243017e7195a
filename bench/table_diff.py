"""Compare the per-split test tables of two results pages, cell by cell, against the seed spread.

Reads the method × task tables of each test split from two pages that ``kinpath run`` wrote
(``runs/*/report/results.md``, ``docs/results/tcga-run.md``, or a page quoting them under
headings ``## Test split NAME`` or a line starting with ```NAME:test```), and prints, per
split, method and task, the macro-F1 (or micro-F1) before → after and the change. A change
is flagged when it exceeds twice the seed spread: the row's own standard deviation over seeds
where either page fitted it with several (the larger of the two), else the largest standard
deviation of any several-seed row of that split and task on either page.

With ``--stages``, the two pages' "Stage times" tables instead: each stage's time before and
after and their ratio, and the totals.

    python bench/table_diff.py docs/results/tcga.md docs/results/tcga-run.md
    python bench/table_diff.py --stages docs/results/tcga-run-2026-12-08-fp32.md docs/results/tcga-run.md
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


def seconds(text: str) -> float:
    """``4 min 34 s``, ``42.7 s``, ``1 h 2 min 3 s`` as seconds."""
    parts = re.findall(r"([\d.]+) (h|min|s)\b", text)
    if not parts:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(v) * {"h": 3600, "min": 60, "s": 1}[unit] for v, unit in parts)


def read_stage_times(page: Path) -> dict[str, float]:
    """Stage → seconds, from the page's ``## Stage times`` table (its total row left out)."""
    out: dict[str, float] = {}
    inside = False
    for line in page.read_text().splitlines():
        if line.startswith("## "):
            inside = line.strip() == "## Stage times"
            continue
        if not inside or not line.startswith("| ") or line.startswith(("| stage", "|---")):
            continue
        stage, time = (c.strip() for c in line.strip().strip("|").split("|")[:2])
        if stage != "**total**":
            out[stage] = seconds(time)
    if not out:
        raise ValueError(f"{page}: no stage times found")
    return out


def stage_rows(before: Path, after: Path) -> list[tuple[str, float | None, float | None]]:
    """(stage, seconds before, seconds after), in the after page's order, then the stages
    only the before page has."""
    a, b = read_stage_times(before), read_stage_times(after)
    return [(s, a.get(s), b.get(s)) for s in [*b, *(s for s in a if s not in b)]]


def duration(x: float | None) -> str:
    if x is None:
        return "—"
    h, rest = divmod(round(x), 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h} h {m:02d} min {s:02d} s"
    return f"{m} min {s:02d} s" if m else f"{x:.1f} s"


def print_stages(before: Path, after: Path) -> None:
    rows = stage_rows(before, after)
    print("| stage | before | after | after / before |")
    print("|---|---|---|---|")
    for stage, a, b in rows:
        ratio = f"{b / a:.2f}" if a and b else "—"
        print(f"| {stage} | {duration(a)} | {duration(b)} | {ratio} |")
    both = [(a, b) for _, a, b in rows if a is not None and b is not None]
    ta, tb = sum(a for a, _ in both), sum(b for _, b in both)
    print(f"| **total** (stages on both) | {duration(ta)} | {duration(tb)} | {tb / ta:.2f} |")


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
    ap.add_argument("--stages", action="store_true", help="the stage times instead of the cells")
    args = ap.parse_args()
    if args.stages:
        print_stages(args.before, args.after)
        return
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
