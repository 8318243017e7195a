import torch

from phenotyping.module import MTCNNModule, masked_multitask_loss
from phenotyping.tasks import MISSING, UNSEEN


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
