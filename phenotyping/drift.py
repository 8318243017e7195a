"""Is tonight's batch like the reports the model was validated on? A drift check before trusting
the 97% promise at a new source.

A model carries a :class:`Reference` made from its validation split (aggregates only: no
report, no report's vector): the principal axes of the unit document vectors, their mean
and spread along them, the share of out-of-vocabulary tokens, the share of reports
flagged ``out_of_scope``, the share of auto-coding decisions within
:data:`NEAR` of a threshold, and the predicted distribution of each task's codes. A batch
gives the same figures (:class:`Accumulator`: sums, so chunks add up), and
:func:`check` compares them:

``vector_shift``     Mahalanobis distance of the batch's mean document vector from the
                     validation mean, along the 16 principal axes (whitened): a mean-shift
                     test that needs only the reference's moments. MMD and classifier
                     two-sample tests need the reference's vectors themselves, which a
                     registered model must not carry.
``oov_rate``         share of the batch's tokens the vocabulary does not know.
``out_of_scope``     share of reports unlike every training site.
``near_threshold``   share of (report, task) decisions within :data:`NEAR` of the task's
                     threshold: where a small shift flips auto-coding.
``label_shift``      the largest total-variation distance, over tasks, between the
                     batch's predicted codes and the validation split's.

Each figure is judged against its own null, made at fit time by the bootstrap
(:func:`fit_reference`): how far a batch of this size drawn from the validation reports
lies from the validation split drawn again, whose 99th percentile is stored per size.
``warn``: a figure beyond its 99th percentile (a batch from the validation's source does
that 1% of the time per figure). ``stop``: two or more beyond, or one beyond twice its
99th percentile. Rates alarm only upwards: fewer unknown tokens, fewer out-of-scope
reports or fewer close calls are no danger. The thresholds are a statistical starting
point, not yet calibrated on unseen institutions (issue 23 measures that).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from kinpath.phenotyping.abstain import NEVER
from kinpath.phenotyping.vocab import UNK

AXES = 16
NEAR = 0.05
SIZES = (10, 25, 50, 100, 200, 500, 1000, 5000)
BOOTSTRAP = 300
FIGURES = ("vector_shift", "oov_rate", "out_of_scope", "near_threshold", "label_shift")
VERDICTS = ("ok", "warn", "stop")


def _unit(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


@dataclass
class Reference:
    """What a model carries: the validation split's aggregates and each figure's null."""

    center: list[float]  # mean of the unit document vectors [F]
    axes: list[list[float]]  # principal axes [AXES, F]
    scale: list[float]  # standard deviation along each axis
    oov_rate: float
    out_of_scope: float
    near_threshold: float
    labels: dict[str, dict[str, float]]  # per task: code → share of predictions
    null: dict[str, dict[str, float]] = field(default_factory=dict)  # figure → size → q99
    reports: int = 0

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)) + "\n")

    @classmethod
    def load(cls, path: Path) -> Reference:
        return cls(**json.loads(Path(path).read_text()))


@dataclass(frozen=True)
class PerReport:
    """Each report's share of the figures: what the sums and the bootstrap are made of."""

    proj: np.ndarray  # [N, AXES] whitened projections
    tokens: np.ndarray  # [N]
    unknown: np.ndarray  # [N]
    out_of_scope: np.ndarray  # [N] bool
    decisions: np.ndarray  # [N] tasks with a threshold
    near: np.ndarray  # [N] of those, within NEAR of it
    labels: dict[str, tuple[np.ndarray, np.ndarray]]  # per task: the codes, each report's index


@dataclass(frozen=True)
class Scored:
    """What a drift check reads of scored reports (arrays in one report order)."""

    vectors: np.ndarray  # [N, F] document vectors
    ids: Sequence[Sequence[int]]  # token ids
    out_of_scope: np.ndarray  # [N] bool
    confidence: Mapping[str, np.ndarray]  # per task, the decoded code's confidence
    labels: Mapping[str, np.ndarray]  # per task, the decoded code
    thresholds: Mapping[str, float]  # per task, the auto-coding threshold
    unknown_id: int = UNK


def per_report(ref: Reference, r: Scored) -> PerReport:
    n = len(r.vectors)
    decisions, near = np.zeros(n, np.int64), np.zeros(n, np.int64)
    for t, conf in r.confidence.items():
        thr = r.thresholds.get(t, NEVER)
        if thr >= 1.0:  # never auto-coded: no decision to flip
            continue
        decisions += 1
        near += np.abs(np.asarray(conf) - thr) < NEAR
    return PerReport(
        project(ref, r.vectors),
        np.array([len(x) for x in r.ids], np.int64),
        np.array([sum(1 for i in x if i == r.unknown_id) for x in r.ids], np.int64),
        np.asarray(r.out_of_scope, bool),
        decisions,
        near,
        {t: np.unique(np.asarray(lab).astype(str), return_inverse=True) for t, lab in r.labels.items()},
    )  # fmt: skip


@dataclass
class Accumulator:
    """The batch's figures as sums, so chunks and jobs add up."""

    reports: int = 0
    vector_sum: np.ndarray | None = None  # [AXES] sum of whitened projections
    tokens: int = 0
    unknown: int = 0
    out_of_scope: int = 0
    decisions: int = 0
    near: int = 0
    labels: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, ref: Reference, reports: Scored) -> None:
        self.add_reports(per_report(ref, reports))

    def add_reports(self, r: PerReport, rows: np.ndarray | None = None) -> None:
        rows = np.arange(len(r.proj)) if rows is None else rows
        proj = r.proj[rows].sum(axis=0)
        self.vector_sum = proj if self.vector_sum is None else self.vector_sum + proj
        self.reports += len(rows)
        self.tokens += int(r.tokens[rows].sum())
        self.unknown += int(r.unknown[rows].sum())
        self.out_of_scope += int(r.out_of_scope[rows].sum())
        self.decisions += int(r.decisions[rows].sum())
        self.near += int(r.near[rows].sum())
        for t, (codes, index) in r.labels.items():
            counts = self.labels.setdefault(t, {})
            # counted by index: the bootstrap adds thousands of draws, np.unique of strings
            # each time was most of a fit's reference
            n = np.bincount(index[rows], minlength=len(codes))
            for i in np.flatnonzero(n):
                counts[str(codes[i])] = counts.get(str(codes[i]), 0) + int(n[i])

    def rates(self) -> dict[str, float]:
        return {"oov_rate": self.unknown / max(1, self.tokens),
                "out_of_scope": self.out_of_scope / max(1, self.reports),
                "near_threshold": self.near / max(1, self.decisions)}  # fmt: skip

    def figures(self, ref: Reference) -> dict[str, float]:
        """The batch's figures; the rates as the batch's own (the check subtracts the
        reference's)."""
        if not self.reports or self.vector_sum is None:
            return {}
        mean = self.vector_sum / self.reports
        return {
            "vector_shift": float(np.linalg.norm(mean)),
            **self.rates(),
            "label_shift": max(
                (_tv(ref.labels.get(t, {}), _shares(c)) for t, c in self.labels.items()),
                default=0.0,
            ),
        }


def project(ref: Reference, vectors: np.ndarray) -> np.ndarray:
    """Unit document vectors along the reference's axes, whitened (validation: mean 0, sd 1)."""
    z = _unit(vectors) - np.asarray(ref.center)
    return (z @ np.asarray(ref.axes).T) / np.maximum(np.asarray(ref.scale), 1e-9)


def _shares(counts: Mapping[str, int]) -> dict[str, float]:
    n = sum(counts.values())
    return {k: v / n for k, v in counts.items()} if n else {}


def _tv(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    # fsum is exactly rounded: the same figure whatever order the set of codes comes in (its
    # order follows the process's string hashes, so a plain sum gave each run its last bits)
    return 0.5 * math.fsum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b))


def fit_reference(reports: Scored, seed: int = 0) -> Reference:
    """The reference from the validation split's reports (in one order across the arrays),
    with each figure's null: for each batch size, :data:`BOOTSTRAP` pairs of a batch drawn
    from the validation reports and a validation split drawn again, so that the null holds
    both the batch's sampling error and the reference's own. For a distance (vectors,
    labels) the null is the distance between the two; for a rate, how far the batch's rate
    exceeds the split's."""
    n = len(reports.vectors)
    z = _unit(reports.vectors)
    center = z.mean(axis=0)
    _, s, vt = np.linalg.svd(z - center, full_matrices=False)
    k = min(AXES, len(s))
    scale = (s[:k] / np.sqrt(max(1, n - 1))).tolist()
    ref = Reference(center.tolist(), vt[:k].tolist(), scale, 0.0, 0.0, 0.0, {}, {}, n)
    each = per_report(ref, reports)
    whole = Accumulator()
    whole.add_reports(each)
    rates = whole.rates()
    ref.oov_rate, ref.out_of_scope = rates["oov_rate"], rates["out_of_scope"]
    ref.near_threshold = rates["near_threshold"]
    ref.labels = {t: _shares(c) for t, c in whole.labels.items()}
    rng = np.random.default_rng(seed)
    null: dict[str, dict[str, float]] = {f: {} for f in FIGURES}
    for size in SIZES:
        values: dict[str, list[float]] = {f: [] for f in FIGURES}
        for _ in range(BOOTSTRAP):
            batch, again = Accumulator(), Accumulator()
            batch.add_reports(each, rng.integers(0, n, size))
            again.add_reports(each, rng.integers(0, n, n))
            assert batch.vector_sum is not None and again.vector_sum is not None
            shift = batch.vector_sum / batch.reports - again.vector_sum / again.reports
            values["vector_shift"].append(float(np.linalg.norm(shift)))
            values["label_shift"].append(max(
                (_tv(_shares(again.labels.get(t, {})), _shares(c)) for t, c in batch.labels.items()),
                default=0.0,
            ))  # fmt: skip
            mine, theirs = batch.rates(), again.rates()
            for f in ("oov_rate", "out_of_scope", "near_threshold"):
                values[f].append(mine[f] - theirs[f])
        for f in FIGURES:
            null[f][str(size)] = float(np.quantile(values[f], 0.99))
    ref.null = null
    return ref


def _q99(ref: Reference, figure: str, n: int) -> float:
    """The null's 99th percentile at batch size ``n`` (log-linear between the fitted sizes)."""
    sizes = np.array(sorted(int(s) for s in ref.null[figure]))
    q = np.array([ref.null[figure][str(s)] for s in sizes])
    return float(np.interp(np.log(max(n, 1)), np.log(sizes), q))


@dataclass(frozen=True)
class Verdict:
    verdict: str  # ok / warn / stop
    reports: int
    figures: dict[str, float]  # the batch's
    reference: dict[str, float]  # the validation split's
    limits: dict[str, float]  # each figure's 99th percentile at this batch size
    alarms: list[str]  # the figures above their limit

    def as_dict(self) -> dict:
        return asdict(self)


def check(ref: Reference, acc: Accumulator) -> Verdict:
    """One verdict for the batch (see the module docstring)."""
    figures = acc.figures(ref)
    n = acc.reports
    reference = {"vector_shift": 0.0, "oov_rate": ref.oov_rate, "out_of_scope": ref.out_of_scope,
                 "near_threshold": ref.near_threshold, "label_shift": 0.0}  # fmt: skip
    # a distance's limit is its null's 99th percentile; a rate's, the validation rate plus it
    limits = {f: reference[f] + max(_q99(ref, f, n), 0.0) for f in FIGURES}
    alarms, far = [], 0
    for f, v in figures.items():
        if v > limits[f] + 1e-12:
            alarms.append(f)
            far += v - reference[f] > 2 * (limits[f] - reference[f])
    verdict = "ok" if not alarms else "stop" if len(alarms) >= 2 or far else "warn"
    rounded = {f: round(v, 4) for f, v in figures.items()}
    return Verdict(verdict, n, rounded, {f: round(v, 4) for f, v in reference.items()},
                   {f: round(v, 4) for f, v in limits.items()}, alarms)  # fmt: skip
