from itertools import pairwise

import torch

from kinpath.phenotyping.module import MTCNNModule, masked_multitask_loss
from kinpath.phenotyping.tasks import MISSING, UNSEEN


def test_all_missing_task_adds_zero_loss_and_zero_gradient() -> None:
    torch.manual_seed(0)
    m = MTCNNModule(vocab_size=30, num_classes={"site": 3, "grade": 4}, embedding_dim=8, filters=4)
    tokens = torch.randint(2, 30, (5, 10))
    lengths = torch.full((5,), 10)
    labels = torch.tensor([[0, MISSING], [1, MISSING], [2, MISSING], [1, MISSING], [0, MISSING]])
    logits = m(tokens, lengths)
    loss, per_task = masked_multitask_loss(logits, labels, m.tasks)
    assert set(per_task) == {"site"}  # grade contributes nothing
    torch.testing.assert_close(loss, per_task["site"])
    loss.backward()
    grade = m.net.heads["grade"]
    assert grade.weight.grad is None or torch.count_nonzero(grade.weight.grad) == 0
    assert grade.bias.grad is None or torch.count_nonzero(grade.bias.grad) == 0
    assert torch.count_nonzero(m.net.heads["site"].weight.grad) > 0


def test_partly_missing_and_unseen_labels_are_masked() -> None:
    logits = {"t": torch.tensor([[2.0, 0.0], [0.0, 2.0], [5.0, -5.0]], requires_grad=True)}
    labels = torch.tensor([[0], [MISSING], [UNSEEN]])
    loss, _ = masked_multitask_loss(logits, labels, ["t"])
    expected = torch.nn.functional.cross_entropy(logits["t"][:1], torch.tensor([0]))
    torch.testing.assert_close(loss, expected)


def test_no_label_at_all_is_a_zero_with_zero_gradient() -> None:
    logits = {"t": torch.randn(2, 3, requires_grad=True)}
    loss, per_task = masked_multitask_loss(logits, torch.full((2, 1), MISSING), ["t"])
    assert per_task == {} and loss.item() == 0.0
    loss.backward()
    assert torch.count_nonzero(logits["t"].grad) == 0


def test_the_long_tail_options_change_training_only() -> None:
    # class weights and label smoothing shape the training loss; the validation loss that
    # picks checkpoints (and compares runs) stays the plain cross-entropy
    torch.manual_seed(0)
    tokens, lengths = torch.randint(2, 30, (6, 10)), torch.full((6,), 10)
    batch = {"tokens": tokens, "lengths": lengths, "labels": torch.tensor([[0], [1], [2]] * 2),
             "index": torch.arange(6)}  # fmt: skip
    losses = {}
    for name, kw in {"plain": {}, "weighted": {"class_weights": {"site": [5.0, 1.0, 0.1]}},
                     "smoothed": {"label_smoothing": 0.2}}.items():  # fmt: skip
        torch.manual_seed(0)
        m = MTCNNModule(vocab_size=30, num_classes={"site": 3}, embedding_dim=8, filters=4,
                        dropout=0.0, **kw)  # type: ignore[arg-type]  # fmt: skip
        logged: dict[str, float] = {}
        m.log = lambda k, v, logged=logged, **_: logged.__setitem__(k, float(v))  # type: ignore[method-assign]
        train_loss = float(m.training_step(batch, 0))
        with torch.no_grad():
            m._eval_step(batch, "val")
        losses[name] = (train_loss, logged)
    train = {k: v[0] for k, v in losses.items()}
    val = {k: v[1]["val/loss"] for k, v in losses.items()}
    assert train["weighted"] != train["plain"] and train["smoothed"] != train["plain"]
    assert val["weighted"] == val["smoothed"] == val["plain"]


def test_the_word_vectors_can_learn_slower_than_the_rest() -> None:
    m = MTCNNModule(vocab_size=30, num_classes={"site": 3}, embedding_dim=8, filters=4,
                    lr=1e-3, embedding_lr=1e-4)  # fmt: skip
    groups = m.configure_optimizers().param_groups
    table = next(g for g in groups if any(p is m.net.embedding.weight for p in g["params"]))
    assert table["lr"] == 1e-4 and len(table["params"]) == 1
    assert {g["lr"] for g in groups} == {1e-3, 1e-4}
    n = sum(len(g["params"]) for g in groups)
    assert n == sum(1 for p in m.parameters() if p.requires_grad)  # every weight, once


def test_one_cycle_rises_to_each_groups_rate_then_falls_to_near_zero_by_the_last_epoch() -> None:
    import pytorch_lightning as pl

    torch.manual_seed(0)
    rows = [{"tokens": torch.randint(2, 30, (4, 10)), "lengths": torch.full((4,), 10),
             "labels": torch.randint(0, 3, (4, 1)), "index": torch.arange(4)} for _ in range(5)]  # fmt: skip
    m = MTCNNModule(vocab_size=30, num_classes={"site": 3}, embedding_dim=8, filters=4,
                    lr=1e-2, embedding_lr=1e-3, lr_schedule="one-cycle", warmup_fraction=0.25)  # fmt: skip
    seen: list[tuple[float, float]] = []

    class Rates(pl.Callback):
        def on_train_batch_start(self, trainer, *_):
            rest, table = (g["lr"] for g in trainer.optimizers[0].param_groups)
            seen.append((rest, table))

    trainer = pl.Trainer(max_epochs=4, limit_val_batches=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[Rates()])  # fmt: skip
    trainer.fit(m, train_dataloaders=torch.utils.data.DataLoader(rows, batch_size=None))  # type: ignore[arg-type]
    assert len(seen) == 20  # 4 epochs of 5 steps
    rest, table = zip(*seen, strict=True)
    peak = max(range(20), key=lambda i: rest[i])
    assert 4 <= peak <= 5  # a quarter of the steps rising
    assert rest[peak] == 1e-2 and table[peak] == 1e-3  # each group peaks at its own rate
    assert rest[0] < 1e-2 / 20 and rest[-1] < 1e-2 / 50  # from a 25th, down to near zero
    assert all(a <= b for a, b in pairwise(rest[: peak + 1]))
    assert all(a >= b for a, b in pairwise(rest[peak:]))
    assert all(abs(r / t - 10) < 1e-6 for r, t in zip(rest, table, strict=True))


def test_a_constant_rate_is_the_default_and_an_unknown_schedule_is_refused() -> None:
    import pytest

    m = MTCNNModule(vocab_size=30, num_classes={"site": 3}, embedding_dim=8, filters=4)
    assert isinstance(m.configure_optimizers(), torch.optim.Adam)
    with pytest.raises(ValueError, match="lr_schedule must be"):
        MTCNNModule(vocab_size=30, num_classes={"site": 3}, lr_schedule="cosine")  # type: ignore[arg-type]
