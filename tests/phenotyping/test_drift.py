"""The drift check's statistics: a batch like the validation reports passes, a shifted one
does not, and the reference holds aggregates only."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from kinpath.phenotyping.drift import Accumulator, Reference, Scored, check, fit_reference


def _reports(n: int, rng: np.random.Generator, shift: float = 0.0, unknown: float = 0.02) -> Scored:
    vectors = rng.normal(size=(n, 32)) + np.r_[5.0, np.zeros(31)]
    vectors[:, 1] += shift
    ids = [[1 if rng.random() < unknown else 2 for _ in range(50)] for _ in range(n)]
    oos = rng.random(n) < 0.02
    conf = {"site": rng.uniform(0.5, 1.0, n), "grade": rng.uniform(0.3, 0.9, n)}
    labels = {"site": rng.choice(["C34", "C50", "C18"], n, p=[0.5, 0.3, 0.2])}
    return Scored(vectors, ids, oos, conf, labels, {"site": 0.8, "grade": 1.01}, unknown_id=1)


def test_a_batch_from_the_validation_source_passes_and_a_shifted_one_does_not(tmp_path) -> None:
    rng = np.random.default_rng(0)
    ref = fit_reference(_reports(600, rng))
    ref.save(tmp_path / "drift.json")
    ref = Reference.load(tmp_path / "drift.json")
    ok = oov = moved = 0
    for _ in range(20):
        acc = Accumulator()
        acc.add(ref, _reports(200, rng))
        ok += check(ref, acc).verdict == "ok"
        acc = Accumulator()
        acc.add(ref, _reports(200, rng, unknown=0.08))  # another scanner: more unknown words
        oov += "oov_rate" in check(ref, acc).alarms
        acc = Accumulator()
        acc.add(ref, _reports(200, rng, shift=1.5))  # another template: vectors move
        v = check(ref, acc)
        moved += v.verdict != "ok" and "vector_shift" in v.alarms
    assert ok >= 17 and oov == 20 and moved == 20


def test_chunks_add_up_to_the_whole_batch() -> None:
    rng = np.random.default_rng(1)
    ref = fit_reference(_reports(300, rng))
    r = _reports(100, rng)
    whole, parts = Accumulator(), Accumulator()
    whole.add(ref, r)
    for s in (slice(0, 30), slice(30, 100)):
        parts.add(ref, Scored(r.vectors[s], r.ids[s], r.out_of_scope[s],
                              {t: c[s] for t, c in r.confidence.items()},
                              {t: v[s] for t, v in r.labels.items()}, r.thresholds, 1))  # fmt: skip
    assert check(ref, whole) == check(ref, parts)


def test_the_reference_holds_aggregates_only() -> None:
    rng = np.random.default_rng(2)
    r = _reports(300, rng)
    vectors = r.vectors
    ref = fit_reference(r)
    blob = json.dumps(ref.__dict__)
    assert len(ref.axes) == 16 and len(ref.center) == 32
    # no report's vector: none of the validation vectors is in it
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    stored = np.array([*ref.axes, ref.center])
    assert np.abs(unit[:, None, :] - stored[None]).max(axis=2).min() > 1e-3
    assert len(blob) < 20_000


def test_the_label_shift_has_the_same_bits_whatever_the_hash_seed() -> None:
    # a set of codes iterates in the order of the process's string hashes; the reference's
    # figures must not depend on it (a TCGA rebuild's drift.json differed in its last bits)
    code = """
from kinpath.phenotyping.drift import _tv
a = {f"c{i}": (i % 7 + 1) / 70 for i in range(40)}
b = {f"c{i}": (i % 5 + 1) / 60 for i in range(10, 50)}
print(repr(_tv(a, b)))
"""
    runs = [
        subprocess.run([sys.executable, "-c", code], env=os.environ | {"PYTHONHASHSEED": seed},
                       capture_output=True, text=True, check=True)
        for seed in ("1", "2")
    ]  # fmt: skip
    assert runs[0].stdout == runs[1].stdout, [r.stdout for r in runs]
