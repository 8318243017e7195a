"""Tasks and their label encoders.

A task is a column of the report table (``site``, ``subsite``, ``laterality``,
``behavior``, ``histology``, ``grade`` by default; any set, e.g. ``t_stage``).
An empty cell is a missing label: it is encoded as :data:`MISSING`, which the
loss ignores, and never becomes a class. Encoders are fitted on the train split
only; a label seen only in validation or test is *unseen*: it is counted and
reported, encoded as :data:`MISSING` for the loss, and kept as a wrong answer
for the metrics (:data:`UNSEEN`), since the model cannot predict it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

DEFAULT_TASKS = ("site", "subsite", "laterality", "behavior", "histology", "grade")
MISSING = -100  # torch's CrossEntropyLoss ignore_index
UNSEEN = -1


@dataclass(frozen=True)
class LabelEncoder:
    """One task's classes (sorted), fitted on the train split."""

    task: str
    classes: tuple[str, ...]

    @classmethod
    def fit(cls, task: str, labels: Iterable[str]) -> LabelEncoder:
        return cls(task, tuple(sorted({x for x in labels if x != ""})))

    @property
    def index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}

    def encode(self, labels: Sequence[str]) -> tuple[list[int], Counter[str]]:
        """Class ids; missing → MISSING, unseen → UNSEEN (with a count of each unseen label)."""
        idx = self.index
        unseen: Counter[str] = Counter()
        out = []
        for x in labels:
            if x == "":
                out.append(MISSING)
            elif x in idx:
                out.append(idx[x])
            else:
                unseen[x] += 1
                out.append(UNSEEN)
        return out, unseen

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.classes[i] for i in ids]

    def __len__(self) -> int:
        return len(self.classes)


def fit_encoders(table: dict[str, Sequence[str]], tasks: Sequence[str]) -> dict[str, LabelEncoder]:
    """One encoder per task from the train split's columns."""
    encoders = {t: LabelEncoder.fit(t, table[t]) for t in tasks}
    for t, e in encoders.items():
        if len(e) < 2:
            log.warning("task %s has %d class(es) in the train split", t, len(e))
    return encoders
