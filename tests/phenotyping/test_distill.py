"""Distilling a teacher bundle (a seed ensemble's, or a fit's) into one network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from kinpath.common import InputError
from kinpath.phenotyping.bundle import load_bundle, save_bundle, score_ids
from kinpath.phenotyping.cli import cli
from kinpath.phenotyping.module import MTCNNModule

ROOT = Path(__file__).resolve().parents[2]


def test_the_soft_target_loss_is_the_tempered_kl_divergence() -> None:
    m = MTCNNModule(vocab_size=10, num_classes={"site": 3}, embedding_dim=4, filters=2,
                    distill_temperature=2.0)  # fmt: skip
    p = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    m._teacher = {"site": p}
    index = torch.tensor([0, 1])
    # a model that says what the teacher says has nothing left to learn from it
    assert m._distill_loss({"site": torch.log(p)}, index).item() == pytest.approx(0.0, abs=1e-6)
    logits = torch.zeros(2, 3, requires_grad=True)
    loss = m._distill_loss({"site": logits}, index)
    soft = torch.softmax(torch.log(p) / 2.0, -1)
    expected = 4.0 * (soft * (soft.log() - np.log(1 / 3))).sum(1).mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert logits.grad is not None and (logits.grad[0, 0] < 0) and (logits.grad[1, 2] < 0)


def _fit(folder: Path, *extra: str) -> object:
    return cli(["fit", "-c", str(ROOT / "configs/mtcnn.yaml"), "--data.data",
                str(ROOT / "tests/fixtures/reports.csv"), "--trainer.max_epochs=4",
                "--model.filters=16", "--data.max_length=200", "--trainer.logger=false",
                "--trainer.enable_progress_bar=false", f"--checkpoint.dirpath={folder}", *extra],
               quiet=True)  # fmt: skip


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A fit's bundle, and the data module it was fitted on."""
    folder = tmp_path_factory.mktemp("teacher")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        t = _fit(folder / "t", "--seed_everything=1")
        return save_bundle(folder / "bundle", t.model, t.datamodule), t.datamodule  # type: ignore[attr-defined]


def test_a_student_learns_its_teachers_answers(
    teacher: tuple[Path, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    bundle, dm = teacher
    ids = [dm.ids[i] for i in dm.splits["train"]]
    said = score_ids(load_bundle(bundle, precision="fp32"), ids)[0]

    def agreement(c: object) -> float:
        folder = save_bundle(tmp_path / "b", c.model, c.datamodule)  # type: ignore[attr-defined]
        got = score_ids(load_bundle(folder, precision="fp32"), ids)[0]
        return float(np.mean([(got[k].argmax(1) == said[k].argmax(1)).mean() for k in said]))

    alone = _fit(tmp_path / "a", "--seed_everything=2")
    student = _fit(tmp_path / "s", "--seed_everything=2", f"--model.teacher={bundle}",
                   "--model.distill_weight=1.0", "--model.distill_temperature=1.0")  # fmt: skip
    assert student.model._teacher is not None  # type: ignore[attr-defined]
    # labels ignored (weight 1): the student follows the teacher more closely than the same
    # seed trained on the labels does
    assert agreement(student) > agreement(alone)

    with pytest.raises(InputError, match="vocabulary"):
        _fit(tmp_path / "x", "--data.min_patients=1", f"--model.teacher={bundle}")


def test_a_student_can_start_from_one_of_its_teachers_networks(
    teacher: tuple[Path, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    bundle = teacher[0]
    net = load_bundle(bundle, precision="fp32").nets[0]
    # no training step: what the student holds is where it starts
    started = _fit(tmp_path / "s", "--seed_everything=2", f"--model.teacher={bundle}",
                   "--model.teacher_init=0", "--trainer.limit_train_batches=0")  # fmt: skip
    mine = started.model.net.state_dict()  # type: ignore[attr-defined]
    assert mine.keys() == net.state_dict().keys()
    assert all(torch.equal(mine[k], v) for k, v in net.state_dict().items())
    fresh = _fit(tmp_path / "f", "--seed_everything=2", f"--model.teacher={bundle}",
                 "--trainer.limit_train_batches=0").model.net.state_dict()  # type: ignore[attr-defined]  # fmt: skip
    assert not torch.equal(fresh["embedding.weight"], net.state_dict()["embedding.weight"])

    with pytest.raises(InputError, match=r"teacher_init 1: the teacher has 1 network\(s\)"):
        _fit(tmp_path / "x", f"--model.teacher={bundle}", "--model.teacher_init=1")
    with pytest.raises(InputError, match="is not this model's shape"):
        _fit(tmp_path / "y", f"--model.teacher={bundle}", "--model.teacher_init=0",
             "--model.filters=8")  # fmt: skip
    with pytest.raises(ValueError, match="teacher_init needs a teacher"):
        MTCNNModule(vocab_size=10, num_classes={"site": 3}, embedding_dim=4, filters=2,
                    teacher_init=0)  # fmt: skip
