"""Recalibration at a new site: the same network, a decoder refitted on that site's reviewed reports.

A model that moves to another hospital keeps what it learned but not necessarily its
promise: confidences that meant 97% on the validation reports may mean less there.
:func:`recalibrate` scores a few hundred reports the site's registrars reviewed (the
review export, or any labelled table in the training format), refits the decoder on
them (temperatures, thresholds, back-off, scope: :func:`kinpath.phenotyping.decode.fit_decoder`,
with the model's coding rules and targets) and the drift reference, and writes a new
bundle whose network, tokenizer and vocabulary are the base model's, byte for byte.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from kinpath.common import InputError
from kinpath.phenotyping.bundle import encode, load_bundle, score
from kinpath.phenotyping.decode import decode, decoded_metrics, fit_decoder
from kinpath.phenotyping.drift import Scored, fit_reference

log = logging.getLogger(__name__)
FEW = 100  # fewer reviewed reports than this: thresholds rest on little


def check_labels(table: pd.DataFrame, label_maps: dict[str, list[str]], path: Path) -> None:
    """Every non-empty label must be one of the model's classes: a recalibrated decoder can
    only choose among the classes the network scores."""
    for t, classes in label_maps.items():
        if t not in table.columns:
            continue
        values = table[t].fillna("").astype(str)
        bad = values[(values != "") & ~values.isin(classes)]
        if len(bad):
            first = table.loc[bad.index[0], "report_id"] if "report_id" in table else bad.index[0]
            raise InputError(
                f"column {t!r}: {len(bad)} label(s) are not among the model's {len(classes)} "
                f"classes (first: report {first}, {bad.iloc[0]!r}); recalibration refits "
                "thresholds, it cannot add classes: retrain for those",
                path=path,
            )
    if not any(t in table.columns for t in label_maps):
        raise InputError(
            f"no label column of the model's tasks ({', '.join(label_maps)})", path=path
        )


def recalibrate(bundle_folder: Path, reviewed: Path, out: Path) -> dict[str, float]:
    """Write the recalibrated bundle to ``out``; returns the decoded figures on the reviewed
    reports (in-sample: what the new thresholds were chosen on)."""
    from kinpath.kg.reports import read_reports

    reviewed = Path(reviewed)
    table = pd.concat(list(read_reports(reviewed)), ignore_index=True)
    bundle = load_bundle(bundle_folder, precision="fp32")
    check_labels(table, bundle.label_maps, reviewed)
    if len(table) < FEW:
        log.warning("%d reviewed reports: thresholds chosen on so few are loose (%d or more "
                    "advised)", len(table), FEW)  # fmt: skip
    enc = encode(bundle, table["text"].tolist())
    s = score(bundle, enc.ids, vectors=True)
    assert s.vectors is not None
    truth = {
        t: table[t].fillna("").astype(str).to_numpy() if t in table.columns
        else np.full(len(table), "", dtype=object)
        for t in bundle.tasks
    }  # fmt: skip
    old = bundle.decoder
    decoder = fit_decoder(
        s.probs, truth, bundle.label_maps, old.hierarchy, old.valid, targets=old.targets,
        target=old.target, confidence=old.confidence, similarity=s.similarity,
    )  # fmt: skip
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(bundle.folder, out)
    (out / "decoder.json").write_text(json.dumps(decoder.as_dict(), indent=1) + "\n")
    d = decode(s.probs, decoder, s.similarity)
    seen = Scored(s.vectors, enc.ids, d.out_of_scope, d.probs, d.labels, decoder.thresholds)
    fit_reference(seen).save(out / "drift.json")
    manifests = json.loads((out / "manifests.json").read_text())
    manifests.setdefault("recalibrations", []).append({"reports": len(table)})
    (out / "manifests.json").write_text(json.dumps(manifests, indent=2, default=str) + "\n")
    return decoded_metrics(d, truth, decoder, "reviewed")
