"""Decoding: consistent codes, laterality by rule, edit checks, back-off, calibrated thresholds."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kinpath.kg.graph import KnowledgeGraph
from kinpath.phenotyping.abstain import choose_threshold
from kinpath.phenotyping.decode import SITE_HISTOLOGY, Decoder, decode, fit_decoder, fit_temperature
from kinpath.phenotyping.hierarchy import Hierarchy, hierarchy_from_graph
from kinpath.phenotyping.rules import NOT_APPLICABLE, laterality_applies

LABELS = {
    "site": ["C18", "C34", "C50", "C61"],
    "subsite": ["C18.7", "C18.9", "C34.1", "C34.3", "C50.4", "C50.9", "C61.9"],
    "laterality": ["Bilateral", "Left", "Right", NOT_APPLICABLE],
    "behavior": ["3"],
    "histology": ["8070", "8140", "8500", "8550"],
}
VALID = frozenset(
    {
        (u, "8140/3")
        for u in ("C18.7", "C18.9", "C34.1", "C34.3", "C34.9", "C50.4", "C50.9", "C61.9")
    }
    | {(u, h) for u in ("C34.1", "C34.3") for h in ("8070/3", "8550/3")}
    | {(u, "8500/3") for u in ("C50.4", "C50.9")}
)


def _random_probs(n: int, rng: np.random.Generator, scale: float = 3.0) -> dict[str, np.ndarray]:
    out = {}
    for t, classes in LABELS.items():
        z = rng.normal(0, scale, (n, len(classes)))
        e = np.exp(z - z.max(1, keepdims=True))
        out[t] = e / e.sum(1, keepdims=True)
    return out


def _decoder(**kw: object) -> Decoder:
    base = Decoder(LABELS, thresholds={t: 0.0 for t in LABELS}, valid=VALID)
    return base.replace(**kw)


def test_random_logits_never_emit_an_inconsistent_record() -> None:
    rng = np.random.default_rng(0)
    d = decode(_random_probs(500, rng), _decoder())
    for i in range(len(d)):
        site, sub, lat = d.labels["site"][i], d.labels["subsite"][i], d.labels["laterality"][i]
        assert sub == "" or sub[:3] == site
        if laterality_applies(sub or site) is False:
            assert lat == NOT_APPLICABLE
        else:
            assert lat != NOT_APPLICABLE
        hist = d.labels["histology"][i]
        if hist:
            assert (sub, f"{hist}/3") in VALID
    # with no rule tables, site and subsite are still decoded jointly
    d = decode(_random_probs(200, rng), _decoder(valid=None))
    assert all(u[:3] == s for u, s in zip(d.labels["subsite"], d.labels["site"], strict=True))


def test_unpaired_site_never_gets_a_side() -> None:
    p = {t: np.full((1, len(c)), 0.01) for t, c in LABELS.items()}
    p["site"][0, LABELS["site"].index("C61")] = 0.97  # prostate: not a paired organ
    p["subsite"][0, LABELS["subsite"].index("C61.9")] = 0.9
    p["laterality"][0, LABELS["laterality"].index("Right")] = 0.95  # the head insists
    p["histology"][0, LABELS["histology"].index("8140")] = 0.9
    p["behavior"][0] = 1.0
    d = decode(p, _decoder())
    assert d.labels["laterality"][0] == NOT_APPLICABLE
    # at a paired organ the head's "not applicable" share is set aside: a side is emitted
    p["site"][0] = 0.01
    p["site"][0, LABELS["site"].index("C34")] = 0.97
    p["subsite"][0] = 0.01
    p["subsite"][0, LABELS["subsite"].index("C34.1")] = 0.9
    p["laterality"][0] = [0.01, 0.2, 0.1, 0.69]
    d = decode(p, _decoder())
    assert d.labels["laterality"][0] == "Left"


def test_invalid_site_histology_is_flagged_and_not_auto_coded() -> None:
    p = {t: np.full((1, len(c)), 1e-3) for t, c in LABELS.items()}
    p["site"][0, LABELS["site"].index("C18")] = 0.99  # colon ...
    p["subsite"][0, LABELS["subsite"].index("C18.7")] = 0.99
    p["histology"][0, LABELS["histology"].index("8500")] = 0.9  # ... with a ductal carcinoma
    p["histology"][0, LABELS["histology"].index("8140")] = 0.09
    p["behavior"][0] = 1.0
    d = decode(p, _decoder())
    assert d.edit_checks[0] == [SITE_HISTOLOGY]
    assert d.labels["histology"][0] == "8140"  # the most probable valid combination
    assert all(d.abstain[t][0] for t in LABELS)  # sent to review, every task
    # a valid record passes with no check
    p["histology"][0] = [1e-3, 0.9, 0.09, 1e-3]
    d = decode(p, _decoder())
    assert d.edit_checks[0] == [] and not d.abstain["histology"][0]


def _tiny_graph() -> KnowledgeGraph:
    atoms = [  # cui, sab, tty, code, string
        ("H1", "ICDO3", "HT", "C34", "BRONCHUS AND LUNG"),
        ("T1", "ICDO3", "PT", "C34.1", "Upper lobe, lung"),
        ("T3", "ICDO3", "PT", "C34.3", "Lower lobe, lung"),
        ("T9", "ICDO3", "PT", "C34.9", "Lung, NOS"),
        ("G1", "ICDO3", "HT", "814-838", "Adenomas and adenocarcinomas"),
        ("A0", "ICDO3", "PT", "8140/3", "Adenocarcinoma, NOS"),
        ("A1", "ICDO3", "PT", "8550/3", "Acinar cell carcinoma"),
        ("A2", "ICDO3", "PT", "8260/3", "Papillary adenocarcinoma, NOS"),
        ("G2", "ICDO3", "HT", "805-808", "Squamous cell neoplasms"),
        ("S0", "ICDO3", "PT", "8070/3", "Squamous cell carcinoma, NOS"),
    ]
    rels = [  # head, rel, tail, source: tail is head's parent
        ("T1", "PAR", "H1", "ICDO3"), ("T3", "PAR", "H1", "ICDO3"), ("T9", "PAR", "H1", "ICDO3"),
        ("A0", "PAR", "G1", "ICDO3"), ("A1", "PAR", "G1", "ICDO3"), ("A2", "PAR", "G1", "ICDO3"),
        ("S0", "PAR", "G2", "ICDO3"),
        ("A1", "PAR", "X1", "NCI"), ("X1", "PAR", "A0", "NCI"),  # acinar is-a adenocarcinoma
        ("A2", "PAR", "A0", "NCI"),
    ]  # fmt: skip
    a = pd.DataFrame(atoms, columns=["cui", "sab", "tty", "code", "string"])
    a["key"], a["rank"] = "", 0
    r = pd.DataFrame(rels, columns=["head", "rel", "tail", "source"])
    r["rela"] = ""
    return KnowledgeGraph(pd.DataFrame(), a, r, {"checksum": "tiny"})


def test_backoff_yields_the_parent_nos_code_from_a_tiny_graph() -> None:
    h = hierarchy_from_graph(_tiny_graph(), LABELS)
    assert h.backoff["subsite"] == {"C34.1": "C34.9", "C34.3": "C34.9"}
    # 8550 lies under 8140 through a concept without an ICD-O code
    assert h.backoff["histology"] == {"8070": "8070", "8140": "8140", "8550": "8140"}
    p = {t: np.full((1, len(c)), 1e-3) for t, c in LABELS.items()}
    p["site"][0, LABELS["site"].index("C34")] = 0.99
    p["subsite"][0, [2, 3]] = [0.5, 0.49]  # lung, lobe unclear
    p["histology"][0, LABELS["histology"].index("8550")] = 0.55  # adenocarcinoma, subtype unclear
    p["histology"][0, LABELS["histology"].index("8140")] = 0.43
    p["behavior"][0] = 1.0
    p["laterality"][0, 1] = 0.99
    dec = _decoder(thresholds={t: 0.9 for t in LABELS}, hierarchy=h,
                   backoff_thresholds={"subsite": 0.9, "histology": 0.9})  # fmt: skip
    d = decode(p, dec)
    assert d.labels["subsite"][0] == "C34.9" and d.backoff["subsite"][0]
    assert d.labels["histology"][0] == "8140" and d.backoff["histology"][0]
    assert not d.abstain["subsite"][0] and not d.abstain["histology"][0]
    assert d.labels["site"][0] == "C34" and not d.backoff["site"][0]
    # without back-off thresholds they abstain instead
    d = decode(p, dec.replace(backoff_thresholds={}))
    assert d.abstain["subsite"][0] and not d.backoff["subsite"][0]


def _calibrated_task(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A task whose confidence is exactly its chance of being right."""
    conf = rng.beta(8, 1.2, n)
    return conf, rng.random(n) < conf


def test_bounded_thresholds_reach_the_target_on_held_out_data() -> None:
    rng = np.random.default_rng(1)
    target, misses, empirical_misses = 0.97, 0, 0
    for _ in range(200):
        conf, ok = _calibrated_task(600, rng)
        th = choose_threshold(conf, ok, target, level=0.95)
        naive = choose_threshold(conf, ok, target, level=None)
        test_conf, test_ok = _calibrated_task(20_000, rng)
        if th.threshold <= 1:
            misses += test_ok[test_conf >= th.threshold].mean() < target
        empirical_misses += test_ok[test_conf >= naive.threshold].mean() < target
    # at 95% confidence at most ~5% of draws may miss; the empirical choice misses far more
    assert misses <= 20
    assert empirical_misses > 3 * max(misses, 10)


def test_temperature_undoes_overconfidence() -> None:
    rng = np.random.default_rng(2)
    n, k = 4000, 5
    y = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), y] += 1.0
    true_p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    sharp = true_p**3 / (true_p**3).sum(1, keepdims=True)  # overconfident by a factor of 3
    assert abs(fit_temperature(sharp, y) - 3.0) < 0.3


def test_fit_decoder_on_validation_gives_usable_thresholds() -> None:
    rng = np.random.default_rng(3)
    n = 800
    truth_idx = {t: rng.integers(0, len(c), n) for t, c in LABELS.items()}
    truth_idx["site"] = np.array(
        [LABELS["site"].index(LABELS["subsite"][u][:3]) for u in truth_idx["subsite"]]
    )
    probs = {}
    for t, classes in LABELS.items():
        z = rng.normal(0, 1, (n, len(classes)))
        z[np.arange(n), truth_idx[t]] += 6.0
        e = np.exp(z)
        probs[t] = e / e.sum(1, keepdims=True)
    truth = {t: np.array(LABELS[t], dtype=object)[truth_idx[t]] for t in LABELS}
    dec = fit_decoder(probs, truth, LABELS, Hierarchy(), None)
    assert set(dec.temperatures) == set(LABELS)
    assert 0.0 < dec.thresholds["site"] <= 1.0
    assert Decoder.from_dict(dec.as_dict()) == dec
