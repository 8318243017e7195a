"""Label-knowledge heads: the graph's terms give a code a score before any report shows it."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kinpath.kg.graph import build_graph, load_graph
from kinpath.phenotyping import bundle as bundle_module
from kinpath.phenotyping.bundle import (
    Bundle,
    close_calls,
    load_bundle,
    save_bundle,
    score_ids,
)
from kinpath.phenotyping.data import ReportDataModule
from kinpath.phenotyping.labels import code_terms
from kinpath.phenotyping.module import MTCNNModule
from kinpath.phenotyping.network import LabelWeightsHead
from kinpath.phenotyping.precision import native_bf16

ROOT = Path(__file__).resolve().parents[2]

# histology code -> the words a report uses for it; 8520 (lobular carcinoma) is in the
# fixture graph but no training report carries it
TRAINED = {
    "8070": "squamous cell carcinoma",
    "8140": "adenocarcinoma",
    "8500": "invasive ductal carcinoma",
}
HELD_OUT = {"8520": "lobular carcinoma"}
FILLER = [
    *[
        "specimen",
        "received",
        "fixed",
        "formalin",
        "sections",
        "show",
        "tumor",
        "margin",
        "negative",
        "nodes",
    ],
    *["gross", "measures", "cm", "tissue", "examined", "slides", "block"],
]


def _report(rng: random.Random, words: str) -> str:
    text = [rng.choice(FILLER) for _ in range(rng.randint(12, 30))]
    text.insert(rng.randint(0, len(text)), words)
    return "diagnosis : " + " ".join(text) + " ."


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("g") / "graph"
    build_graph(out, umls_dirs=[ROOT / "tests/fixtures/umls_META"])
    return out


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(0)
    rows = []
    for split, n in (("train", 40), ("val", 10)):
        for code, words in TRAINED.items():
            rows += [(code, split, _report(rng, words)) for _ in range(n)]
    for code, words in {**TRAINED, **HELD_OUT}.items():
        rows += [(code, "test", _report(rng, words)) for _ in range(10)]
    table = pd.DataFrame(rows, columns=["histology", "split", "text"])
    table["report_id"] = [f"r{i}" for i in range(len(table))]
    table["patient_id"] = table["report_id"]
    path = tmp_path_factory.mktemp("r") / "reports.csv"
    table.to_csv(path, index=False)
    return path


def test_code_terms_come_from_the_graph(graph: Path) -> None:
    terms = code_terms(load_graph(graph))
    assert (
        "SCC" in terms["histology"]["8070"]
        and "Epidermoid carcinoma, NOS" in terms["histology"]["8070"]
    )
    assert "Upper lobe, lung" in terms["subsite"]["C34.1"]
    assert {"Upper lobe, lung", "Lung, NOS"} <= set(
        terms["site"]["C34"]
    )  # a site takes its subsites'


def _fit(
    graph: Path, reports: Path, heads: str, epochs: int = 15
) -> tuple[ReportDataModule, MTCNNModule]:
    torch.manual_seed(0)
    dm = ReportDataModule(str(reports), tasks=["histology"], graph=str(graph),
                          graph_codes=heads != "plain", min_patients=1, batch_size=8)  # fmt: skip
    m = MTCNNModule(dm.vocab_size, dm.num_classes, embedding_dim=dm.embedding_dim, filters=16,
                    dropout=0.1, heads=heads, label_terms=dm.label_terms,
                    train_counts=dm.train_counts, label_maps=dm.label_maps,
                    coding_rules=dm.coding_rules, lr=3e-3)  # fmt: skip
    opt = m.configure_optimizers()
    m.train()
    for _ in range(epochs):
        for b in dm.train_dataloader():
            logits = m(b["tokens"], b["lengths"])
            loss = torch.nn.functional.cross_entropy(logits["histology"], b["labels"][:, 0])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return dm, m.eval()


def _test_probs(dm: ReportDataModule, m: MTCNNModule) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        ps, ys = [], []
        for b in dm.test_dataloader():
            ps.append(torch.softmax(m(b["tokens"], b["lengths"])["histology"], -1).numpy())
            ys.append(b["labels"][:, 0].numpy())
    return np.concatenate(ps), np.concatenate(ys)


def test_a_code_no_training_report_carries_gets_a_score_from_its_graph_terms(
    graph: Path, reports: Path, tmp_path: Path
) -> None:
    dm, m = _fit(graph, reports, "label-knowledge")
    classes = dm.label_maps["histology"]
    held = classes.index("8520")
    assert dm.train_counts["histology"][held] == 0  # a class only because the graph names it
    assert len(classes) > len(TRAINED) + 1  # every histology code of the graph is a class
    probs, y = _test_probs(dm, m)
    lobular, others = probs[y == held], probs[(y >= 0) & (y != held)]
    chance = 1 / len(classes)
    # non-trivial: far above chance on the reports that name it, and above what others give it
    assert lobular[:, held].mean() > 2 * chance
    assert lobular[:, held].mean() > 5 * others[:, held].mean()
    # the trained codes are still coded right
    assert (others.argmax(1) == y[(y >= 0) & (y != held)]).mean() > 0.9
    # a plain head has no class for it at all
    plain_dm, _ = _fit(graph, reports, "plain", epochs=1)
    assert "8520" not in plain_dm.label_maps["histology"]

    _bundle_scores_as_trained(tmp_path, graph, dm, m)


def test_label_weights_heads_train_and_save_their_graph_vectors(
    graph: Path, reports: Path, tmp_path: Path
) -> None:
    """The output-weight form (``label-weights``): a class for every graph code, trained
    codes coded right, and a bundle that scores as trained. Its score for a code no training
    report carries is measured, not promised: in this fixture it is ~0 (docs/guides/train.md, Heads)."""
    dm, m = _fit(graph, reports, "label-weights", epochs=8)
    classes = dm.label_maps["histology"]
    assert isinstance(m.net.heads["histology"], LabelWeightsHead)
    assert dm.train_counts["histology"][classes.index("8520")] == 0
    probs, y = _test_probs(dm, m)
    trained = (y >= 0) & (y != classes.index("8520"))
    assert (probs[trained].argmax(1) == y[trained]).mean() > 0.9
    b = _bundle_scores_as_trained(tmp_path, graph, dm, m)
    assert isinstance(b.nets[0].heads["histology"], LabelWeightsHead)


def _bundle_scores_as_trained(
    tmp_path: Path, graph: Path, dm: ReportDataModule, m: MTCNNModule
) -> Bundle:
    """The bundle carries the label vectors and the graph they came from, and scores the same."""
    classes = dm.label_maps["histology"]
    bundle_dir = save_bundle(tmp_path / "bundle", m, dm)
    manifest = (bundle_dir / "manifests.json").read_text()
    assert load_graph(graph).checksum in manifest
    vectors = np.load(bundle_dir / "label_vectors.npz")["histology"]
    held = classes.index("8520")
    assert vectors.shape == (len(classes), dm.embedding_dim) and np.abs(vectors[held]).sum() > 0
    # int8 convolutions moved TCGA histology macro-F1 beyond 0.01 for these heads: auto is
    # bf16 (checked) where the CPU has it in hardware, else fp32
    auto = load_bundle(bundle_dir)
    assert auto.nets[0].int8 is None
    assert auto.precision == ("bf16" if native_bf16() else "fp32")
    b = load_bundle(bundle_dir, precision="fp32")  # as trained; int8 is checked in test_network
    ids = [dm.ids[i] for i in dm.splits["test"]]
    got, _ = score_ids(b, ids)
    with torch.no_grad():
        want = [torch.softmax(m(torch.tensor([x]), torch.tensor([len(x)]))["histology"], -1)[0].numpy()
                for x in ids]  # fmt: skip
    np.testing.assert_allclose(got["histology"], np.stack(want), atol=1e-5)
    _bf16_gives_fp32_answers(bundle_dir, ids, got)
    return b


def _bf16_gives_fp32_answers(bundle_dir: Path, ids: list[list[int]], fp32: dict) -> None:
    """bf16 scoring: every task's answer is fp32's; the close calls carry fp32's own
    probabilities, and the rest bf16's (which differ from fp32's, or bf16 did not run)."""
    b = load_bundle(bundle_dir, precision="bf16")
    got, _ = score_ids(b, ids)
    for t in fp32:
        assert (got[t].argmax(1) == fp32[t].argmax(1)).all(), t
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bundle_module, "BF16_RECHECK", 0.0)  # nothing scored again: bf16 throughout
        raw, _ = score_ids(b, ids)
        mp.setattr(bundle_module, "BF16_RECHECK", 2.0)  # everything scored again in fp32
        again, _ = score_ids(b, ids)
    close = close_calls(raw, bundle_module.BF16_RECHECK)  # judged on bf16's figures
    drift = max(float(np.abs(raw[t] - fp32[t]).max()) for t in fp32)
    assert 0 < drift < bundle_module.BF16_RECHECK / 2
    for t in fp32:
        np.testing.assert_allclose(again[t], fp32[t], atol=1e-5)
        np.testing.assert_allclose(got[t][close], fp32[t][close], atol=1e-5)
        np.testing.assert_array_equal(got[t][~close], raw[t][~close])


def test_close_calls_are_the_reports_whose_two_best_classes_are_near() -> None:
    probs = {
        "site": np.array([[0.50, 0.48, 0.02], [0.90, 0.05, 0.05], [0.30, 0.30, 0.40]]),
        "behavior": np.ones((3, 1)),  # one class: never a close call
    }
    assert close_calls(probs, 0.06).tolist() == [True, False, False]
    assert close_calls(probs, 0.2).tolist() == [True, False, True]
