"""Evidence: where in a report each emitted code comes from, as character offsets.

:func:`kinpath.phenotyping.bundle.score` finds, per task, the token windows that most
support the class
(:meth:`kinpath.phenotyping.network.MTCNN.window_scores`) of the code the decoder emitted
(:func:`emitted_classes`: the class itself, or for a back-off code — ``C34.9`` for
an uncertain ``C34.1`` — its most probable class that backs off to it), and
:func:`char_spans` turns token spans into offsets into the text the job read, using the tokenizer's spans (:meth:`kinpath.embeddings.tokenize.ReportTokenizer.pipe_spans`).
An output cell is JSON ``[[start, end, weight], ...]``, best first: offsets
only, never the words.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np

Spans = list[tuple[int, int, float]]


def emitted_classes(
    labels: np.ndarray,
    classes: Sequence[str],
    probs: np.ndarray,
    backoff: Mapping[str, str] | None = None,
) -> np.ndarray:
    """Per report, the class whose evidence backs its emitted label: the label's own class, or
    for a back-off code the most probable class that backs off to it; ``-1`` when the label
    is empty or no class is it."""
    index = {c: i for i, c in enumerate(classes)}
    up = backoff or {}
    children: dict[str, list[int]] = {}
    for c, parent in up.items():
        if c in index:
            children.setdefault(parent, []).append(index[c])
    out = np.full(len(labels), -1, dtype=np.int64)
    for r, label in enumerate(labels):
        label = str(label)
        if label in index:
            out[r] = index[label]
        elif label in children:
            kids = children[label]
            out[r] = kids[int(np.argmax(probs[r, kids]))]
    return out


def char_spans(spans: Spans, offsets: np.ndarray) -> Spans:
    """Token spans ``[first, end)`` as character spans of the text (``offsets``: per token its
    ``(start, end)``); empty ones dropped."""
    out = []
    for a, b, w in spans:
        if 0 <= a < b <= len(offsets):
            start, end = int(offsets[a][0]), int(offsets[b - 1][1])
            if end > start:
                out.append((start, end, w))
    return out


def as_json(spans: Spans) -> str:
    """``[[start, end, weight], ...]`` with the weight to 4 decimals."""
    return json.dumps([[a, b, round(float(w), 4)] for a, b, w in spans])
