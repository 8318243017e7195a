"""Evidence: window scores that add up to what the heads compute, spans that point at words."""

from __future__ import annotations

import numpy as np
import torch

from kinpath.embeddings.tokenize import ReportTokenizer
from kinpath.phenotyping.bundle import LONGEST_SPAN, spans_of
from kinpath.phenotyping.evidence import char_spans, emitted_classes
from kinpath.phenotyping.network import MTCNN, LabelKnowledgeHead


def _net(head: str | None) -> MTCNN:
    torch.manual_seed(0)
    vectors = {"histology": torch.randn(5, 16)} if head else None
    net = MTCNN(50, {"site": 4, "histology": 5}, 16, 8, (2, 3), label_vectors=vectors,
                knowledge_head=head or "label-knowledge")  # fmt: skip
    return net.eval()


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randint(2, 50, (3, 12))
    lengths = torch.tensor([12, 7, 3])
    for r, n in enumerate(lengths.tolist()):
        tokens[r, n:] = 0
    return tokens, lengths


def test_a_linear_heads_window_scores_add_up_to_its_logit() -> None:
    """Plain and label-weights heads: the windows' scores are a decomposition of the logit
    (minus the bias), so a span's weight is its share of the decision."""
    for head in (None, "label-weights"):
        net = _net(head)
        tokens, lengths = _batch()
        with torch.no_grad():
            enc = net.encode(tokens, lengths, windows=True)
            logits = net.classify(enc)
            for task in ("site", "histology"):
                classes = torch.tensor([[0, 1], [2, 3], [len(logits[task][0]) - 1, 0]])
                scores = net.window_scores(enc, task, classes)
                total = sum(s.sum(-1) for _, s in scores)
                h = net.heads[task]
                bias = h.bias if isinstance(h, torch.nn.Linear) else h.plain.bias * h.trained
                want = logits[task].gather(1, classes) - bias[classes]
                torch.testing.assert_close(total, want, rtol=1e-4, atol=1e-4)


def test_a_label_knowledge_heads_best_window_is_its_evidence() -> None:
    net = _net("label-knowledge")
    tokens, lengths = _batch()
    with torch.no_grad():
        enc = net.encode(tokens, lengths, windows=True)
        head = net.heads["histology"]
        assert isinstance(head, LabelKnowledgeHead)
        classes = torch.arange(5).repeat(3, 1)
        ((width, scores),) = net.window_scores(enc, "histology", classes)
        assert width == 3
        torch.testing.assert_close(scores.amax(-1), head.scale * head.evidence(enc))
        # a window that reaches past the report is never evidence
        assert torch.isinf(scores[2, :, 1:]).all()


def test_spans_merge_overlapping_windows_and_keep_three() -> None:
    windows = [(3, np.array([0.0, 5.0, 4.0, 0.0, 0.0, 0.0, 1.0, 0.0, 2.0, 0.0, -3.0, 0.5]))]
    spans = spans_of(windows, 14)
    assert spans[0] == (1, 5, 9.0)  # windows at 1 and 2 overlap: one span, weights added
    assert [s[:2] for s in spans[1:]] == [(8, 11), (6, 9)] or len(spans) == 3
    assert all(b - a <= LONGEST_SPAN and w > 0 for a, b, w in spans) and len(spans) <= 3
    assert spans_of([(3, np.array([-1.0, 0.0]))], 5) == []  # nothing supports the class


def test_token_spans_point_at_the_words_they_were_made_of() -> None:
    tok = ReportTokenizer(phrases=[("invasive", "ductal", "carcinoma"), ("upper", "lobe")])
    text = "Left breast: Invasive ductal carcinoma (IDC).\nIDC, grade 2; right upper lobe."
    ((sents, spans),) = list(tok.pipe_spans([text]))
    words = [w for s in sents for w in s]
    assert len(words) == len(spans)
    got = dict(zip(words, [text[a:b] for a, b in spans], strict=False))
    assert got["left"] == "Left"
    assert got["upper_lobe"] == "upper lobe"
    where = [
        text[a:b]
        for w, (a, b) in zip(words, spans, strict=True)
        if w == "invasive_ductal_carcinoma"
    ]
    assert where == ["Invasive ductal carcinoma", "IDC"]  # the abbreviation's own characters


def test_emitted_code_takes_its_own_spans_or_its_childs_for_a_backoff() -> None:
    classes = ["8140", "8500", "8010", "8520"]
    probs = np.array([[0.1, 0.2, 0.3, 0.4]] * 4)
    labels = np.array(["8140", "8000", "", "9999"], dtype=object)
    up = {"8500": "8000", "8520": "8000", "8140": "8140"}
    assert emitted_classes(labels, classes, probs, up).tolist() == [0, 3, -1, -1]
    offsets = np.array([[0, 4], [5, 9], [10, 15], [16, 20]])
    assert char_spans([(1, 3, 2.0), (3, 3, 1.0)], offsets) == [(5, 15, 2.0)]


def test_evidence_of_a_bf16_batch_is_computed_in_fp32() -> None:
    """A bf16 bundle encodes under autocast; its windows come back bf16, the heads are fp32."""
    net = _net("label-knowledge")
    tokens, lengths = _batch()
    classes = torch.arange(5).repeat(3, 1)
    with torch.no_grad():
        exact = net.window_scores(net.encode(tokens, lengths, windows=True), "histology", classes)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            enc = net.encode(tokens, lengths, windows=True)
        got = net.window_scores(enc, "histology", classes)
    assert got[0][1].dtype == torch.float32
    inside = torch.isfinite(exact[0][1])
    torch.testing.assert_close(got[0][1][inside], exact[0][1][inside], atol=0.5, rtol=0.05)
