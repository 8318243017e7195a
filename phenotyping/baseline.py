"""The reference baseline: TF-IDF + logistic regression, one model per task.

Word 1–2-grams of the report text (sublinear term frequency, terms in at least
two training reports), an L2-regularized multinomial logistic regression per
task, trained on the train split's labelled reports and scored on the test
split with the CNN's metrics; abstention thresholds are chosen on the
validation split the same way, so coverage compares too. The tasks' regressions are
fitted in parallel worker processes (``n_jobs``); each is the same fit it is alone.
"""

from __future__ import annotations

import numpy as np
from joblib import Parallel, cpu_count, delayed
from scipy.sparse import spmatrix
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from kinpath.phenotyping.abstain import choose_threshold, evaluate_threshold
from kinpath.phenotyping.config import TfidfConfig
from kinpath.phenotyping.data import ReportDataModule
from kinpath.phenotyping.metrics import classification_metrics, rare_macro_f1

PARALLEL_FROM = 1000  # training reports from which n_jobs=None fits in worker processes


def _fit_task(
    x_tr: spmatrix, y_tr: np.ndarray, x_va: spmatrix, x_te: spmatrix, cfg: TfidfConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One task's regression, fitted in a worker: its classes and validation and test
    probabilities (what goes back is small; the coefficients stay in the worker)."""
    lr = LogisticRegression(C=cfg.C, max_iter=cfg.max_iter)
    lr.fit(x_tr, y_tr)
    return lr.classes_, lr.predict_proba(x_va), lr.predict_proba(x_te)


def tfidf_baseline(dm: ReportDataModule, config: TfidfConfig | None = None) -> dict[str, float]:
    """Test metrics per task, named like the CNN's (``test/<task>/macro_f1``, and per table
    ``test/<table>/<task>/macro_f1`` when the data has several)."""
    cfg = config or TfidfConfig()
    text = dm.table[dm.hparams["text_column"]].to_numpy()
    vec = TfidfVectorizer(
        ngram_range=(1, cfg.ngram_max), min_df=cfg.min_df, max_features=cfg.max_features,
        sublinear_tf=True, lowercase=True,
    )  # fmt: skip
    tr, va, te = (dm.splits[s] for s in ("train", "val", "test"))
    x_tr = vec.fit_transform(text[tr])
    x_va, x_te = vec.transform(text[va]), vec.transform(text[te])
    # a task with two classes or more in training gets a regression; the one with the most
    # classes first, so the longest fits start at once
    labelled = {j: dm.labels[tr, j] >= 0 for j in range(len(dm.tasks))}
    n_classes = {j: len(np.unique(dm.labels[tr, j][labelled[j]])) for j in labelled}
    fitted = sorted((j for j in n_classes if n_classes[j] >= 2), key=lambda j: -n_classes[j])
    # worker processes take seconds to start (9.7 s on the fixtures, bench/tfidf_parallel.py),
    # more than a small table's fits take in one process
    n_jobs = cfg.n_jobs or (cpu_count() if len(tr) >= PARALLEL_FROM else 1)
    n_jobs = min(n_jobs, max(len(fitted), 1))
    scored = Parallel(n_jobs=n_jobs)(
        delayed(_fit_task)(x_tr[labelled[j]], dm.labels[tr, j][labelled[j]], x_va, x_te, cfg)
        for j in fitted
    )
    probabilities = dict(zip(fitted, scored, strict=True))
    out: dict[str, float] = {}
    for j, task in enumerate(dm.tasks):
        y_tr, y_va, y_te = dm.labels[tr, j], dm.labels[va, j], dm.labels[te, j]
        keep = y_tr >= 0
        if j not in probabilities:
            # one class seen in training: the model is that class
            pred_va = np.full(len(va), y_tr[keep][0] if keep.any() else 0)
            pred_te = np.full(len(te), y_tr[keep][0] if keep.any() else 0)
            conf_va, conf_te = np.ones(len(va)), np.ones(len(te))
        else:
            classes, p_va, p_te = probabilities[j]
            pred_va, pred_te = classes[p_va.argmax(1)], classes[p_te.argmax(1)]
            conf_va, conf_te = p_va.max(1), p_te.max(1)
        lab_te = y_te != -100
        if not lab_te.any():
            continue
        for k, v in classification_metrics(y_te[lab_te], pred_te[lab_te]).items():
            out[f"test/{task}/{k}"] = v
        classes = np.array(dm.label_maps[task], dtype=object)
        truth = dm.codes(task, te)
        counts = dm.train_code_counts[task]
        if (rare := rare_macro_f1(truth, classes[pred_te], counts)) is not None:
            out[f"test/{task}/rare_macro_f1"] = rare
        lab_va = y_va != -100
        th = choose_threshold(conf_va[lab_va], pred_va[lab_va] == y_va[lab_va], 0.97)
        acc, cov = evaluate_threshold(
            conf_te[lab_te], pred_te[lab_te] == y_te[lab_te], th.threshold
        )
        out[f"test/{task}/coverage"] = cov
        out[f"test/{task}/covered_accuracy"] = acc if acc == acc else 0.0
        if dm.source_of is not None:  # each table's test split on its own too
            for name in sorted(set(dm.source_of[te])):
                rows = lab_te & (dm.source_of[te] == name)
                for k, v in classification_metrics(y_te[rows], pred_te[rows]).items():
                    out[f"test/{name}/{task}/{k}"] = v
                part = dm.source_of[te] == name
                rare = rare_macro_f1(truth[part], classes[pred_te[part]], counts)
                if rare is not None:
                    out[f"test/{name}/{task}/rare_macro_f1"] = rare
                acc, cov = evaluate_threshold(
                    conf_te[rows], pred_te[rows] == y_te[rows], th.threshold
                )
                out[f"test/{name}/{task}/coverage"] = cov
                out[f"test/{name}/{task}/covered_accuracy"] = acc if acc == acc else 0.0
    return out
