"""What goes to review, and in which order.

A record is in the queue when any task abstained (below its threshold, a failed
edit check or out of scope: those hold every task). The order is by **expected
corrections**: the sum, over the record's fields sent to review, of the chance
that the model's code is wrong (``1 − confidence``). A registrar opening the
first record of the queue meets the report where the most of kinpath's codes are
likely wrong, so each opened report yields the most corrections, and those
corrections are the model's weakest cases — the ones that teach the next fit the
most (uncertainty sampling). ``bench/review_loop.py`` measures this order against
a random one: retrain with N reviewed reports chosen either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

REASONS = ("abstained", "edit_check", "out_of_scope")


@dataclass(frozen=True)
class Item:
    """One record of the queue."""

    record: int
    report_id: str
    fields: tuple[str, ...]  # the tasks to decide
    reasons: tuple[str, ...]  # why it is here (REASONS)
    expected_corrections: float


def _true(v: object) -> bool:
    return bool(v) and str(v).lower() not in ("false", "0", "nan", "none")


def item(row: Mapping[str, object], tasks: Sequence[str]) -> Item | None:
    """The queue's view of one scored row (``kinpath predict`` columns); None when nothing of it
    is to review or it is an error row."""
    if row.get("status") == "error":
        return None
    fields = tuple(t for t in tasks if _true(row.get(f"{t}_abstain")))
    if not fields:
        return None
    reasons = []  # a failed edit check or out of scope holds every task; else they abstained
    if row.get("edit_checks"):
        reasons.append("edit_check")
    if _true(row.get("out_of_scope")):
        reasons.append("out_of_scope")
    if not reasons:
        reasons.append("abstained")
    expected = 0.0
    for t in fields:
        p = row.get(f"{t}_prob")
        p = float(p) if isinstance(p, (int, float)) and p == p else 0.0
        expected += 1.0 - min(max(p, 0.0), 1.0)
    return Item(
        int(row.get("record", -1)),  # type: ignore[call-overload]
        str(row["report_id"]),
        fields,
        tuple(reasons),
        expected,
    )


def ordered(rows: Sequence[Mapping[str, object]], tasks: Sequence[str]) -> list[Item]:
    """The queue: every record with a field to review, most expected corrections first (ties:
    the input's order)."""
    items = [i for r in rows if (i := item(r, tasks)) is not None]
    return sorted(items, key=lambda i: -i.expected_corrections)
