import pytest
import torch
from torch.nn.functional import normalize

from kinpath.phenotyping.network import MTCNN


@pytest.mark.parametrize("heads", ["plain", "label-knowledge", "label-weights"])
def test_shapes_and_padding_does_not_change_scores(heads: str) -> None:
    torch.manual_seed(0)
    knowledge = {"site": torch.randn(4, 8)} if heads != "plain" else None
    net = MTCNN(50, {"site": 4, "grade": 3}, embedding_dim=8, filters=6,
                label_vectors=knowledge, knowledge_head=heads).eval()  # fmt: skip
    short = torch.randint(2, 50, (2, 12))
    lengths = torch.tensor([12, 7])
    short[1, 7:] = 0
    padded = torch.cat([short, torch.zeros(2, 3000 - 12, dtype=torch.long)], dim=1)
    a, b = net(short, lengths), net(padded, lengths)
    assert a["site"].shape == (2, 4) and a["grade"].shape == (2, 3)
    for t in a:
        torch.testing.assert_close(a[t], b[t])


def test_init_vectors_and_freezing() -> None:
    init = torch.randn(10, 4)
    net = MTCNN(10, {"x": 2}, embedding_dim=4, filters=2, init_vectors=init, freeze_embeddings=True)
    torch.testing.assert_close(net.embedding.weight.data, init)
    assert not net.embedding.weight.requires_grad


@pytest.mark.parametrize("heads", ["plain", "label-knowledge"])
def test_int8_convolutions_agree_with_fp32(heads: str) -> None:
    """int8 convolutions give fp32's answers, whatever the heads read from them."""
    torch.manual_seed(0)
    knowledge = {"histology": torch.randn(40, 32)} if heads != "plain" else None
    net = MTCNN(200, {"site": 6, "histology": 40}, embedding_dim=32, filters=24,
                label_vectors=knowledge, knowledge_head=heads).eval()  # fmt: skip
    tokens = torch.randint(2, 200, (6, 90))
    lengths = torch.tensor([90, 70, 40, 12, 6, 5])
    with torch.inference_mode():
        fp32 = {t: torch.softmax(v, -1) for t, v in net(tokens, lengths).items()}
        maps = [torch.relu(c(net.embedding(tokens).transpose(1, 2))) for c in net.convs]
        net.use_int8()
        int8 = {t: torch.softmax(v, -1) for t, v in net(tokens, lengths).items()}
        quantized = net.int8(net.embedding(tokens))
    for a, b in zip(maps, quantized, strict=True):  # same shapes, close values
        assert a.shape == b.shape
        assert (a - b).abs().max() < 0.05 * a.abs().max()
    for t in fp32:
        assert (fp32[t] - int8[t]).abs().max() < 0.02
        assert (fp32[t].argmax(1) == int8[t].argmax(1)).all()


def test_label_knowledge_training_gives_the_max_cosines_value_and_gradients() -> None:
    """Training differentiates only each class's best window: the logits and every weight's
    gradient are those of the head's definition, the max over windows of the key-query
    cosine (a passage repeated word for word, so tied windows, included)."""
    torch.manual_seed(0)
    net = MTCNN(60, {"histology": 30}, embedding_dim=16, filters=8,
                label_vectors={"histology": torch.randn(30, 16)}, dropout=0.0)  # fmt: skip
    net.heads["histology"].class_dropout = 0.0
    tokens = torch.randint(2, 60, (4, 40))
    tokens[0, 20:30] = tokens[0, 5:15]  # windows that tie
    lengths = torch.tensor([40, 33, 9, 5])
    for t, n in enumerate(lengths):
        tokens[t, n:] = 0
    head = net.heads["histology"]

    def defined(enc):  # the evidence as the head's docstring states it
        keys = normalize(head.key(enc.tokens) + head.context(enc.context), dim=-1)
        queries = normalize(head.query(head.label_vectors), dim=-1)
        cos = (keys @ queries.T).masked_fill(~enc.inside[:, :, None], float("-inf"))
        return head.own(enc.z) + head.scale * cos.amax(dim=1)

    grads = []
    for logits_of in (lambda: net(tokens, lengths)["histology"],
                      lambda: defined(net.encode(tokens, lengths))):  # fmt: skip
        net.zero_grad()
        logits = logits_of()
        (logits * torch.linspace(-1, 1, logits.numel()).reshape(logits.shape)).sum().backward()
        grads.append((logits.detach(), {n: p.grad.clone() for n, p in net.named_parameters()
                                         if p.grad is not None}))  # fmt: skip
    (fast, fast_grads), (slow, slow_grads) = grads
    torch.testing.assert_close(fast, slow)
    assert fast_grads.keys() == slow_grads.keys() and "heads.histology.key.weight" in fast_grads
    for name in fast_grads:
        torch.testing.assert_close(fast_grads[name], slow_grads[name], msg=name)
