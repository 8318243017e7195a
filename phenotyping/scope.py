"""Out of scope: is a report like the reports the model was trained on?

A model trained on lung, breast and kidney reports still answers for a
melanoma, and may answer confidently. Each training site with enough reports
(``min_reports``, 5 by default: a centroid of fewer would stand for too few
patients) gets a centroid of the CNN's document vectors (L2-normalized); a
report's *similarity* is its highest cosine to any centroid. The decoder's
scope threshold is a low quantile of the validation reports' similarities
(:func:`kinpath.phenotyping.decode.fit_decoder`), so a report further from every
training site than nearly all validation reports is flagged ``out_of_scope``
and not auto-coded. Centroids are averages of many reports' vectors, no text.
"""

from __future__ import annotations

import numpy as np


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


def site_centroids(features: np.ndarray, site: np.ndarray, min_reports: int = 5) -> np.ndarray:
    """``[sites with ≥ min_reports, F]`` unit centroids of the unit document vectors."""
    z = _unit(features.astype(np.float64))
    rows = []
    for s in np.unique(site[site >= 0]):
        mine = z[site == s]
        if len(mine) >= min_reports:
            rows.append(mine.mean(axis=0))
    return _unit(np.array(rows)) if rows else np.zeros((0, features.shape[1]))


def similarity(features: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The highest cosine of each report's vector to a centroid (``-1`` without centroids)."""
    if not len(centroids):
        return np.full(len(features), -1.0)
    return (_unit(features.astype(np.float64)) @ centroids.T).max(axis=1)
