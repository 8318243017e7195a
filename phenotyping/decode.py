"""From per-task probabilities to codes a registrar can accept unseen, or send to review.

The heads give each task a probability per class, independently. A registry
needs a record that is right and internally consistent, so :func:`decode`
turns them into one, in this order:

1. **Calibration.** Each task's probabilities are temperature-scaled
   (``p ** (1/T)``, renormalized; the same as dividing the logits by T), with
   T fitted on validation (:func:`fit_temperature`).
2. **Site and subsite jointly.** A subsite lies in its 3-character site
   (C34.1 in C34): pairs are scored ``p_site(C34) · p_subsite(C34.1)`` over
   the consistent pairs only (renormalized); the site emitted is the most
   probable one summed over its subsites, the subsite the most probable within
   it. No contradiction can be emitted.
3. **Site × histology.** With a table of valid combinations (SEER's), the
   emitted (subsite, histology/behavior) is the most probable valid one. If
   the independent best answers were not a valid pair, the record carries the
   ``site_histology`` edit check; if no valid pair exists the histology is left
   empty. A record with a failed edit check is never auto-coded.
4. **Laterality** only where it applies (:mod:`kinpath.phenotyping.rules`): at an
   unpaired site it is ``not applicable`` (SEER code 0), resting on the site
   decision; at a paired site one of the sides (the head's ``not applicable``
   share removed); where the site alone cannot tell, the head decides.
5. **Abstention.** A task is auto-coded when its calibrated confidence reaches
   its threshold (:func:`kinpath.phenotyping.abstain.choose_threshold`: a bound on
   accuracy that accounts for the validation size).
6. **Back-off.** A subsite or histology below its threshold whose NOS parent
   (:mod:`kinpath.phenotyping.hierarchy`: C34.9, 8140) holds enough probability — the
   sum over the classes that back off to it — is coded as that parent,
   ``<task>_backoff`` true, at the parent's own threshold.
7. **Out of scope.** A report whose document vector is far from every
   training site's centroid (cosine below a validation quantile) is flagged
   ``out_of_scope`` and nothing of it is auto-coded.

:func:`fit_decoder` chooses the temperatures and thresholds on validation
predictions; :class:`Decoder` is what a model carries (``decoder.json``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.optimize import minimize_scalar

from kinpath.phenotyping.abstain import NEVER, choose_threshold
from kinpath.phenotyping.hierarchy import BACKOFF_TASKS, Hierarchy
from kinpath.phenotyping.rules import NOT_APPLICABLE, laterality_applies

SITE_HISTOLOGY = "site_histology"  # the edit check's name in ``edit_checks``
EPS = 1e-12


@dataclass(frozen=True)
class Decoder:
    """Everything decoding needs besides the probabilities; JSON-serializable."""

    label_maps: dict[str, list[str]]
    temperatures: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    backoff_thresholds: dict[str, float] = field(default_factory=dict)
    hierarchy: Hierarchy = field(default_factory=Hierarchy)
    valid: frozenset[tuple[str, str]] | None = None  # (subsite, "8140/3")
    scope_threshold: float | None = None  # least cosine to a training centroid
    target: float = 0.97
    confidence: float = 0.95
    targets: dict[str, float] = field(default_factory=dict)  # per task, overriding target

    def as_dict(self) -> dict:
        d = asdict(self)
        d["hierarchy"] = self.hierarchy.as_dict()
        d["valid"] = None if self.valid is None else sorted(map(list, self.valid))
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Decoder:
        d = dict(d)
        d["hierarchy"] = Hierarchy.from_dict(d.get("hierarchy"))
        if d.get("valid") is not None:
            d["valid"] = frozenset(tuple(x) for x in d["valid"])
        return cls(**d)

    def replace(self, **kw: object) -> Decoder:
        return type(self)(**(self.__dict__ | kw))


@dataclass(frozen=True)
class Decoded:
    """Per task: label (``""`` when none), confidence, abstain, backoff; per report the flags."""

    labels: dict[str, np.ndarray]
    probs: dict[str, np.ndarray]
    abstain: dict[str, np.ndarray]
    backoff: dict[str, np.ndarray]
    edit_checks: list[list[str]]
    out_of_scope: np.ndarray

    def __len__(self) -> int:
        return len(self.out_of_scope)


def calibrate(p: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)``."""
    if temperature == 1.0:
        return p
    z = np.log(np.clip(p, EPS, 1.0)) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(p: np.ndarray, y: np.ndarray) -> float:
    """The T minimizing the negative log-likelihood of the labelled rows (``y >= 0``)."""
    keep = y >= 0
    if keep.sum() < 2 or p.shape[1] < 2:
        return 1.0
    logp = np.log(np.clip(p[keep], EPS, 1.0))
    yk = y[keep]

    def nll(log_t: float) -> float:
        z = logp / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        return float(-(z[np.arange(len(yk)), yk] - np.log(np.exp(z).sum(axis=1))).mean())

    res = minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded")
    return float(np.exp(res.x))


def decode(
    probs: dict[str, np.ndarray], decoder: Decoder, similarity: np.ndarray | None = None
) -> Decoded:
    """Codes, confidences and flags for a batch of reports (see the module docstring)."""
    tasks = [t for t in decoder.label_maps if t in probs]
    n = len(next(iter(probs.values()))) if probs else 0
    p = {t: calibrate(probs[t], decoder.temperatures.get(t, 1.0)) for t in tasks}
    names = {t: np.array(decoder.label_maps[t], dtype=object) for t in tasks}
    labels: dict[str, np.ndarray] = {}
    conf: dict[str, np.ndarray] = {}
    for t in tasks:
        best = p[t].argmax(1) if p[t].shape[1] else np.zeros(n, int)
        labels[t] = names[t][best] if len(names[t]) else np.full(n, "", dtype=object)
        conf[t] = p[t][np.arange(n), best] if p[t].shape[1] else np.zeros(n)
    checks: list[list[str]] = [[] for _ in range(n)]

    sub_q = None  # the joint (site, subsite) distribution, when both tasks are there
    if "site" in tasks and "subsite" in tasks:
        sub_q, col_site, col_sub = _site_subsite(
            p["site"], p["subsite"], names["site"], names["subsite"]
        )
        names["subsite"] = col_sub  # the joint's columns
        # the most probable site (summed over its subsites), then its most probable subsite
        site_mass = _group_sum(sub_q, col_site, len(names["site"]))
        site_idx = site_mass.argmax(1)
        u = np.where(col_site[None, :] == site_idx[:, None], sub_q, -1.0).argmax(1)
        labels["subsite"] = col_sub[u]
        conf["subsite"] = np.where(col_sub[u] != "", sub_q[np.arange(n), u], 0.0)
        labels["site"] = names["site"][site_idx]
        conf["site"] = site_mass[np.arange(n), site_idx]
        if decoder.valid is not None and "histology" in tasks:
            _site_histology(
                decoder.valid, names, col_site, sub_q, u, p["histology"], labels, conf, checks
            )

    oos = np.zeros(n, bool)
    if similarity is not None and decoder.scope_threshold is not None:
        oos = similarity < decoder.scope_threshold
    held = oos | np.array([bool(c) for c in checks], dtype=bool)  # to review, whatever else
    abstain = {t: (conf[t] < decoder.thresholds.get(t, NEVER)) | held for t in tasks}
    backoff = {t: np.zeros(n, bool) for t in tasks}
    if "laterality" in tasks:
        _laterality(names["laterality"], p["laterality"], labels, conf, abstain, decoder)
    for t in BACKOFF_TASKS:
        if t in tasks:
            q = sub_q if t == "subsite" and sub_q is not None else p[t]
            _backoff(t, q, names[t], decoder, labels, conf, abstain, backoff, held)
    return Decoded(labels, conf, abstain, backoff, checks, oos)


def _group_sum(q: np.ndarray, group_of: np.ndarray, groups: int) -> np.ndarray:
    out = np.zeros((len(q), groups))
    np.add.at(out.T, group_of, q.T)
    return out


def _site_subsite(
    p_site: np.ndarray, p_sub: np.ndarray, sites: np.ndarray, subs: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The joint distribution over consistent (site, subsite) pairs: ``(q, site of column, subsite of column)``.

    A subsite whose site is not a site class keeps no mass. A site class with no
    subsite class gets a column of its own (subsite ``""``), scored with an
    average subsite's share, so that the site can still be chosen.
    """
    site_index = {s: i for i, s in enumerate(sites)}
    site_of = np.array([site_index.get(u[:3], -1) for u in subs], dtype=int)
    keep = site_of >= 0
    q = p_site[:, site_of[keep]] * p_sub[:, keep]
    col_site, col_sub = site_of[keep], np.asarray(subs, dtype=object)[keep]
    orphan = np.array(sorted(set(range(len(sites))) - set(col_site)), dtype=int)
    if len(orphan):
        q = np.concatenate([q, p_site[:, orphan] / max(1, len(subs))], axis=1)
        col_site = np.concatenate([col_site, orphan])
        col_sub = np.concatenate([col_sub, np.full(len(orphan), "", dtype=object)])
    q = q / np.clip(q.sum(axis=1, keepdims=True), EPS, None)
    return q, col_site, col_sub


def _site_histology(
    valid: frozenset[tuple[str, str]],
    names: dict[str, np.ndarray],
    col_site: np.ndarray,
    sub_q: np.ndarray,
    chosen: np.ndarray,
    ph: np.ndarray,
    labels: dict[str, np.ndarray],
    conf: dict[str, np.ndarray],
    checks: list[list[str]],
) -> None:
    """The most probable valid (subsite, histology) pair; flag records whose best pair is not."""
    n = len(sub_q)
    hist = names["histology"]
    behaviors = labels.get("behavior", np.full(n, "3", dtype=object))
    by_site = {(u[:3], h) for u, h in valid}  # a site without a subsite column: any of its subsites
    masks = {
        b: np.array([[((u, f"{h}/{b}") in valid) if u else ((s, f"{h}/{b}") in by_site)
                      for h in hist] for u, s in zip(names["subsite"], names["site"][col_site], strict=True)])
        for b in set(behaviors)
    }  # fmt: skip
    for i in range(n):
        ok = masks[behaviors[i]]
        u0, h0 = int(chosen[i]), int(ph[i].argmax())
        if ok[u0, h0]:
            continue
        checks[i].append(SITE_HISTOLOGY)
        joint = sub_q[i][:, None] * ph[i][None, :] * ok
        if joint.max() <= 0:  # no valid pair at all: emit no histology
            labels["histology"][i], conf["histology"][i] = "", 0.0
            continue
        u, h = np.unravel_index(int(joint.argmax()), joint.shape)
        labels["subsite"][i] = names["subsite"][u]
        conf["subsite"][i] = sub_q[i, u] if names["subsite"][u] else 0.0
        labels["site"][i] = names["site"][col_site[u]]
        conf["site"][i] = sub_q[i, col_site == col_site[u]].sum()
        labels["histology"][i], conf["histology"][i] = hist[h], ph[i, h]


def _laterality(
    sides: np.ndarray,
    p: np.ndarray,
    labels: dict[str, np.ndarray],
    conf: dict[str, np.ndarray],
    abstain: dict[str, np.ndarray],
    decoder: Decoder,
) -> None:
    """Not applicable at unpaired sites, a side at paired ones, the head where it depends."""
    na = [i for i, s in enumerate(sides) if s == NOT_APPLICABLE]
    side_cols = [i for i, s in enumerate(sides) if s != NOT_APPLICABLE]
    where = "subsite" if "subsite" in labels else "site" if "site" in labels else None
    if where is None:
        return
    thr = decoder.thresholds.get("laterality", NEVER)
    for i in range(len(p)):
        site = labels["site"][i] if "site" in labels else ""
        sub = labels["subsite"][i] if "subsite" in labels else ""
        # the site alone decides for most sites (C18: never, C50: always); the subsite only
        # where the site is paired in part (C71.1 frontal lobe is, C71.6 cerebellum is not)
        by_site = laterality_applies(site) if site else None
        applies = by_site if by_site is not None else (laterality_applies(sub) if sub else None)
        rests = (
            abstain["site"][i] if by_site is not None and "site" in abstain else abstain[where][i]
        )
        if applies is False:
            labels["laterality"][i] = NOT_APPLICABLE
            conf["laterality"][i] = conf[
                "site" if by_site is not None and "site" in conf else where
            ][i]
            abstain["laterality"][i] = rests
        elif applies and side_cols:
            q = p[i, side_cols] / max(EPS, p[i, side_cols].sum())
            j = int(q.argmax())
            labels["laterality"][i], conf["laterality"][i] = sides[side_cols[j]], q[j]
            abstain["laterality"][i] = q[j] < thr or rests
        elif applies and na:
            labels["laterality"][i], conf["laterality"][i] = "", 0.0
            abstain["laterality"][i] = True


def _backoff(
    task: str,
    q: np.ndarray,
    classes: np.ndarray,
    decoder: Decoder,
    labels: dict[str, np.ndarray],
    conf: dict[str, np.ndarray],
    abstain: dict[str, np.ndarray],
    backoff: dict[str, np.ndarray],
    held: np.ndarray,
) -> None:
    """Code the NOS parent where the fine code abstains and the parent's mass is enough."""
    parents, mass = backoff_mass(task, q, classes, decoder.hierarchy)
    if not parents:
        return
    thr = decoder.backoff_thresholds.get(task, NEVER)
    best = mass.argmax(1)
    top = mass[np.arange(len(q)), best]
    use = abstain[task] & ~held & (top >= thr)
    if task == "histology" and decoder.valid is not None and "subsite" in labels:
        behavior = labels.get("behavior", np.full(len(q), "3", dtype=object))
        for i in np.flatnonzero(use):  # a back-off code must also be a valid combination
            use[i] = (labels["subsite"][i], f"{parents[best[i]]}/{behavior[i]}") in decoder.valid
    for i in np.flatnonzero(use):
        labels[task][i], conf[task][i] = parents[best[i]], top[i]
    abstain[task] = abstain[task] & ~use
    backoff[task] = use


def backoff_mass(
    task: str, q: np.ndarray, classes: np.ndarray, hierarchy: Hierarchy
) -> tuple[list[str], np.ndarray]:
    """The NOS parents of a task and, per report, the probability under each."""
    up = hierarchy.backoff.get(task, {})
    parents = sorted(set(up.values()))
    if not parents:
        return [], np.zeros((len(q), 0))
    index = {c: i for i, c in enumerate(parents)}
    cols = [(j, index[up[c]]) for j, c in enumerate(classes[: q.shape[1]]) if c in up]
    mass = np.zeros((len(q), len(parents)))
    for j, k in cols:
        mass[:, k] += q[:, j]
    return parents, mass


def fit_decoder(
    probs: dict[str, np.ndarray],
    truth: dict[str, np.ndarray],
    label_maps: dict[str, list[str]],
    hierarchy: Hierarchy | None = None,
    valid: frozenset[tuple[str, str]] | None = None,
    targets: dict[str, float] | None = None,
    target: float = 0.97,
    confidence: float = 0.95,
    similarity: np.ndarray | None = None,
    scope_quantile: float = 0.01,
) -> Decoder:
    """Temperatures and thresholds from validation predictions.

    ``truth`` holds the true label names per task (``""`` where missing). Each
    threshold is chosen on the decoded (calibrated, consistent) answers, so it
    holds for what is emitted; a back-off threshold is chosen on the reports
    whose fine code abstains, where back-off would act, counting the parent as
    right when the true code backs off to it (or is it).
    """
    targets = targets or {}
    temps = {}
    for t, lm in label_maps.items():
        if t in probs:
            idx = {c: i for i, c in enumerate(lm)}
            y = np.array([idx.get(v, -1) if v else -1 for v in truth[t]])
            temps[t] = fit_temperature(probs[t], y)
    dec = Decoder(dict(label_maps), temps, {}, {}, hierarchy or Hierarchy(), valid,
                  None, target, confidence, dict(targets))  # fmt: skip
    if similarity is not None and len(similarity):
        dec = dec.replace(scope_threshold=float(np.quantile(similarity, scope_quantile)))
    raw = decode(probs, dec.replace(thresholds={t: 0.0 for t in temps}))
    thresholds: dict[str, float] = {}
    for t in temps:
        has = truth[t] != ""
        ok = raw.labels[t][has] == truth[t][has]
        thresholds[t] = choose_threshold(
            raw.probs[t][has], ok, targets.get(t, target), confidence
        ).threshold
    dec = dec.replace(thresholds=thresholds)
    fine = decode(probs, dec)
    backoff_thr: dict[str, float] = {}
    up_all = dec.hierarchy.backoff
    for t in BACKOFF_TASKS:
        up = up_all.get(t)
        if t not in temps or not up:
            continue
        q = calibrate(probs[t], temps[t])
        classes = np.array(label_maps[t], dtype=object)
        if t == "subsite" and "site" in temps:
            q, _, classes = _site_subsite(calibrate(probs["site"], temps["site"]), q,
                                          np.array(label_maps["site"], dtype=object), classes)  # fmt: skip
        parents, mass = backoff_mass(t, q, classes, dec.hierarchy)
        rows = fine.abstain[t] & (truth[t] != "")
        best = mass.argmax(1)
        ok = np.array([up.get(y, y) == parents[b] for y, b in zip(truth[t], best, strict=True)])
        top = mass[np.arange(len(q)), best]
        backoff_thr[t] = choose_threshold(
            top[rows], ok[rows], targets.get(t, target), confidence
        ).threshold
    return dec.replace(backoff_thresholds=backoff_thr)


def contradictions(d: Decoded, valid: frozenset[tuple[str, str]] | None = None) -> int:
    """Auto-coded answers that contradict each other: a subsite outside the emitted site, a
    side at an unpaired site, an invalid site × histology pair. Zero by construction."""
    n = 0
    for i in range(len(d)):
        coded = {t: d.labels[t][i] for t in d.labels if not d.abstain[t][i] and d.labels[t][i]}
        site, sub = coded.get("site"), coded.get("subsite")
        if site and sub and sub[:3] != site:
            n += 1
        lat, where = coded.get("laterality"), sub or site
        if lat and lat != NOT_APPLICABLE and where and laterality_applies(where) is False:
            n += 1
        hist = coded.get("histology")
        if valid is not None and sub and hist:
            b = coded.get("behavior", "3")
            n += (sub, f"{hist}/{b}") not in valid
    return n


def decoded_metrics(
    d: Decoded, truth: dict[str, np.ndarray], decoder: Decoder, prefix: str
) -> dict[str, float]:
    """Per task, over the reports with a label: the share auto-coded at the fine level and its
    accuracy, the share backed off and its accuracy (the parent is right when the true code
    backs off to it); per report set: edit-check and out-of-scope shares, contradictions."""
    out: dict[str, float] = {}
    up = decoder.hierarchy.backoff
    for t in d.labels:
        has = truth[t] != ""
        if not has.any():
            continue
        fine = has & ~d.abstain[t] & ~d.backoff[t]
        back = has & d.backoff[t]
        out[f"{prefix}/{t}/coverage"] = float(fine.sum() / has.sum())
        out[f"{prefix}/{t}/covered_accuracy"] = (
            float((d.labels[t][fine] == truth[t][fine]).mean()) if fine.any() else 0.0
        )
        if t in up:
            right = [
                up[t].get(y, y) == lab
                for y, lab in zip(truth[t][back], d.labels[t][back], strict=True)
            ]
            out[f"{prefix}/{t}/backoff"] = float(back.sum() / has.sum())
            out[f"{prefix}/{t}/backoff_accuracy"] = float(np.mean(right)) if right else 0.0
    out[f"{prefix}/edit_checks"] = (
        float(np.mean([bool(c) for c in d.edit_checks])) if len(d) else 0.0
    )
    out[f"{prefix}/out_of_scope"] = float(d.out_of_scope.mean()) if len(d) else 0.0
    out[f"{prefix}/contradictions"] = float(contradictions(d, decoder.valid))
    return out


def independent(
    probs: dict[str, np.ndarray], label_maps: dict[str, list[str]], thresholds: dict[str, float]
) -> Decoded:
    """Each task alone: its argmax, abstaining below its threshold, no checks — how kinpath
    decoded before this module, kept as the baseline the decoder is measured against."""
    labels, conf, abstain = {}, {}, {}
    for t, p in probs.items():
        names = np.array(label_maps[t], dtype=object)
        best = p.argmax(1)
        labels[t], conf[t] = names[best], p[np.arange(len(p)), best]
        abstain[t] = conf[t] < thresholds.get(t, NEVER)
    n = len(next(iter(probs.values()))) if probs else 0
    return Decoded(labels, conf, abstain, {t: np.zeros(n, bool) for t in probs},
                   [[] for _ in range(n)], np.zeros(n, bool))  # fmt: skip
