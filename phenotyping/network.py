"""The multitask CNN (MT-CNN): one shared Kim-style CNN over a report, one head per task.

A plain ``nn.Module``, so batch inference loads it without Lightning. Shapes::

    tokens  [B, T] int64 (0 = padding)      lengths [B]
    embed   [B, T, D]  → transpose → [B, D, T]
    conv_k  [B, F, T-k+1]  for k in kernel_sizes, ReLU
    pool    [B, F]  max over the windows that lie inside the report
    concat  [B, F·K] → dropout → head_t [B, C_t]  for each task t

A task's head is ``plain`` (a linear layer), ``label-knowledge``
(:class:`LabelKnowledgeHead`: label-wise attention whose queries are the
graph term vectors of the task's ICD-O-3 codes, so a code with few or no
training reports still gets a score from what the graph calls it) or
``label-weights`` (:class:`LabelWeightsHead`: a linear layer whose class weights
are made from the same term vectors).

The max-pool is masked: a window that reaches into the padding never wins, so
a report's scores do not depend on how far its batch was padded. Defaults are
the published MT-CNN's (FrESCO): windows 3/4/5, 300 filters each, dropout 0.5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, cast, get_args

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

Heads = Literal["plain", "label-knowledge", "label-weights"]
HEADS: tuple[str, ...] = get_args(Heads)
KNOWLEDGE_HEADS = HEADS[1:]  # the heads whose classes carry the graph's term vectors


@dataclass
class Encoded:
    """What the heads read: the pooled document vector, and, when a label-knowledge head needs
    them, each window's token vector, its convolution features and which windows are real."""

    z: torch.Tensor  # [B, F·K]
    tokens: torch.Tensor | None = None  # [B, W, D]: the mean word vector of each window
    context: torch.Tensor | None = None  # [B, W, F·K]: the windows' convolution features
    inside: torch.Tensor | None = None  # [B, W] bool: the window lies inside the report
    # asked for by evidence (:meth:`MTCNN.window_scores`): per width, the window each filter's
    # max-pool took, [B, F]
    argmax: list[torch.Tensor] | None = None


class KnowledgeHead(nn.Module):
    """What the two heads whose classes carry graph term vectors share: each class's fixed
    vector ``q_c`` (``label_vectors``), which classes training reports carry (``trained``),
    and the trained classes' own linear weights (``plain``). While training, each step hides
    the own weights of a random ``class_dropout`` share of the trained classes (the zero-shot
    trick of simulating unseen classes), so that what the graph gives must pick a class out
    on its own: all a class without training reports has."""

    label_vectors: torch.Tensor
    trained: torch.Tensor

    def __init__(
        self, label_vectors: torch.Tensor, trained: torch.Tensor, feature_dim: int,
        class_dropout: float,
    ):  # fmt: skip
        super().__init__()
        self.register_buffer("label_vectors", label_vectors.float().clone())
        self.register_buffer("trained", trained.float().clone())
        self.plain = nn.Linear(feature_dim, label_vectors.shape[0])
        self.class_dropout = class_dropout

    def own(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, C]``: the trained classes' own logits (0 for the others, and for those hidden)."""
        shown = self.trained
        if self.training and self.class_dropout > 0:
            shown = shown * (torch.rand(shown.shape, device=shown.device) >= self.class_dropout)
        return self.plain(z) * shown


class LabelKnowledgeHead(KnowledgeHead):
    """One task's head whose classes carry graph term vectors (CAML / LAAT-style).

    Each class ``c`` has a fixed vector ``q_c``: the mean of the word vectors of its
    graph terms (names and synonyms of its ICD-O-3 code). It attends over the report's
    windows with ``q_c`` as the query; the key of a window is the mean of its words'
    vectors plus a learned map of its convolution features. The attention is hard: the class's
    graph evidence is the best cosine between a window's key and its query (a max over
    windows, as the CNN pools; a softmax-weighted cosine took 2.5 times as long per
    training batch, docs/guides/train.md, Heads). The logit is

        trained_c · (w_c · z + b_c)  +  scale · evidence_c

    so a class that no training report carries (``trained_c = 0``) is scored from its
    terms alone, and a trained class gets its plain weights plus the same evidence.
    Training hides some trained classes' own weights (:class:`KnowledgeHead`), so the
    evidence learns to pick a class out on its own and its scale is learned against the
    plain logits it competes with.
    Query and key start as the same random projection, so before any training the
    evidence is the cosine between the class's terms and the report's closest window.
    ``scale`` starts at 20, as cosine classifiers scale their logits (normalized
    softmax uses 16-30): at 5 or 10 a class without training reports stayed below the
    trained ones whatever the report said (tests/phenotyping/test_labels.py).
    """

    def __init__(
        self,
        label_vectors: torch.Tensor,
        trained: torch.Tensor,
        feature_dim: int,
        dim: int = 64,
        scale: float = 20.0,
        class_dropout: float = 0.5,
    ):
        super().__init__(label_vectors, trained, feature_dim, class_dropout)
        embedding_dim = label_vectors.shape[1]
        projection = torch.randn(dim, embedding_dim, generator=torch.Generator().manual_seed(0))
        self.query = nn.Linear(embedding_dim, dim, bias=False)
        self.key = nn.Linear(embedding_dim, dim, bias=False)
        self.context = nn.Linear(feature_dim, dim, bias=False)
        with torch.no_grad():
            self.query.weight.copy_(projection / dim**0.5)
            self.key.weight.copy_(projection / dim**0.5)
            self.context.weight.zero_()
        self.scale = nn.Parameter(torch.tensor(float(scale)))

    def evidence(self, enc: Encoded) -> torch.Tensor:
        """``[B, C]``: per class, the best cosine between a window's key and its query."""
        assert enc.tokens is not None and enc.context is not None and enc.inside is not None
        keys = F.normalize(self.key(enc.tokens) + self.context(enc.context), dim=-1)  # [B, W, d]
        queries = F.normalize(self.query(self.label_vectors), dim=-1)  # [C, d]
        outside = torch.zeros(enc.inside.shape, device=keys.device, dtype=keys.dtype)
        outside = outside.masked_fill(~enc.inside, float("-inf"))
        with torch.no_grad():  # [B, C, W]: each class's windows in a row, masked in place
            scores = torch.matmul(queries, keys.transpose(1, 2)).add_(outside[:, None, :])
        if not (torch.is_grad_enabled() and (keys.requires_grad or queries.requires_grad)):
            return scores.amax(dim=-1)
        # Training: the max's gradient reaches only each class's best window, so differentiate
        # those windows' cosines alone: the [B, C, W] product is neither kept for backward nor
        # multiplied back through (docs/results/epoch-profile.md). The value is the same cosine;
        # tied windows (a repeated passage) give their gradient to one window instead of
        # sharing it, the same gradient for the weights.
        best = scores.argmax(dim=-1)  # [B, C]
        picked = keys.gather(1, best[:, :, None].expand(-1, -1, keys.shape[-1]))  # [B, C, d]
        return (picked * queries).sum(dim=-1)

    def forward(self, z: torch.Tensor, enc: Encoded) -> torch.Tensor:
        return self.own(z) + self.scale * self.evidence(enc)


class LabelWeightsHead(KnowledgeHead):
    """One task's linear head whose class weights come from graph term vectors.

    Class ``c``'s weight vector over the document vector ``z`` is a learned projection
    of its fixed term vector ``q_c`` (:class:`LabelKnowledgeHead` has the same
    ``q_c``) plus, for a class that training reports carry, its own plain weights::

        logit_c = (P q_c) · z  +  trained_c · (w_c · z + b_c)

    ``P`` is shared by all classes and learned from the trained ones, so a class with
    no training report is scored by where its terms put it. Training hides some trained
    classes' own weights (:class:`KnowledgeHead`), so that ``P q_c`` alone must pick a
    class out.
    This is the "output weights initialized from the term vectors" form of issue 9;
    the attention form reads the report's words directly and this one only its pooled
    convolution features.
    """

    def __init__(
        self,
        label_vectors: torch.Tensor,
        trained: torch.Tensor,
        feature_dim: int,
        class_dropout: float = 0.5,
    ):
        super().__init__(label_vectors, trained, feature_dim, class_dropout)
        self.project = nn.Linear(label_vectors.shape[1], feature_dim, bias=False)

    def forward(self, z: torch.Tensor, enc: Encoded) -> torch.Tensor:
        return self.own(z) + z @ self.project(self.label_vectors).T


class Int8Convs(nn.Module):
    """The convolutions as int8 matrix products, for CPU inference.

    A width-``k`` convolution is ``out[t] = b + sum_j W_j x[t+j]``: one product of
    the embeddings with the offsets' weights stacked (``[k*F, D]``), then shifted
    sums. The product is a dynamically quantized linear layer (int8 weights per
    tensor; fbgemm). Dynamic quantization scales the activations by the range of
    the whole input, i.e. of the batch, so a report's scores would depend on which
    reports share its batch. Every input therefore carries one extra row holding
    the embedding table's own minimum and maximum: the range, and so the scale, is
    the table's for every batch (the tokens are rows of that table, padding is
    zeros). One product per width, not
    one for all: the stacked output is ``k`` times a convolution's (docs/benchmarks.md
    has what that cost). ``bench/batch_throughput.py`` measures the speed and compares
    macro-F1 with fp32's.
    """

    biases: torch.Tensor
    span: torch.Tensor

    def __init__(
        self, convs: Sequence[nn.Conv1d], kernel_sizes: Sequence[int], table: torch.Tensor
    ):
        """``table``: the embedding weights ``[V, D]`` whose rows the inputs are."""
        super().__init__()
        import warnings

        self.kernel_sizes = tuple(kernel_sizes)
        self.filters = int(convs[0].out_channels)
        linears = []
        for conv, k in zip(convs, self.kernel_sizes, strict=True):
            stacked = torch.cat([conv.weight[:, :, j] for j in range(k)])  # [k*F, D]
            linear = nn.Linear(stacked.shape[1], stacked.shape[0], bias=False)
            with torch.no_grad():
                linear.weight.copy_(stacked)
            linears.append(linear)
        with warnings.catch_warnings():
            # torch.ao's eager quantization is deprecated in favour of torchao; it is what the
            # pinned torch ships for CPU int8 GEMMs, so its notice is not the user's business
            warnings.simplefilter("ignore")
            from torch.ao.quantization import quantize_dynamic

            self.gemms: nn.ModuleList = quantize_dynamic(
                nn.ModuleList(linears), {nn.Linear}, dtype=torch.qint8
            )
        self.register_buffer(
            "biases", torch.stack([cast(torch.Tensor, c.bias).detach() for c in convs])
        )
        span = torch.zeros(1, table.shape[1])
        span[0, 0], span[0, 1 % table.shape[1]] = table.detach().min(), table.detach().max()
        self.register_buffer("span", span)  # the table's range, one row

    def forward(self, emb: torch.Tensor) -> list[torch.Tensor]:
        """``[B, T, D]`` → per width, ``[B, F, T-k+1]`` after ReLU (as the convolutions give)."""
        b, t, f = emb.shape[0], emb.shape[1], self.filters
        rows = torch.cat([emb.reshape(b * t, -1), self.span.to(emb.dtype)])
        out = []
        for i, (k, gemm) in enumerate(zip(self.kernel_sizes, self.gemms, strict=True)):
            y = gemm(rows)[:-1].reshape(b, t, -1)  # [B, T, k*F]
            w = t - k + 1
            acc = y[:, 0:w, 0:f]
            for j in range(1, k):
                acc = acc + y[:, j : j + w, j * f : (j + 1) * f]
            out.append(torch.relu(acc + self.biases[i]).transpose(1, 2))
        return out


class MTCNN(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        num_classes: Mapping[str, int],
        embedding_dim: int = 300,
        filters: int = 300,
        kernel_sizes: Sequence[int] = (3, 4, 5),
        dropout: float = 0.5,
        init_vectors: torch.Tensor | None = None,
        freeze_embeddings: bool = False,
        label_vectors: Mapping[str, torch.Tensor] | None = None,
        trained: Mapping[str, torch.Tensor] | None = None,
        knowledge_head: str = "label-knowledge",
    ):
        """``label_vectors``: per task whose head carries graph knowledge (``knowledge_head``:
        ``label-knowledge`` or ``label-weights``), its classes' graph term vectors ``[C, D]``;
        ``trained``: per such task, which classes training reports carry (all, when not given)."""
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        if init_vectors is not None:
            if tuple(init_vectors.shape) != (vocab_size, embedding_dim):
                raise ValueError(
                    f"initial vectors are {tuple(init_vectors.shape)}, expected {(vocab_size, embedding_dim)}"
                )
            with torch.no_grad():
                self.embedding.weight.copy_(init_vectors)
        self.embedding.weight.requires_grad_(not freeze_embeddings)
        self.kernel_sizes = tuple(kernel_sizes)
        self.convs = nn.ModuleList(nn.Conv1d(embedding_dim, filters, k) for k in self.kernel_sizes)
        self.dropout = nn.Dropout(dropout)
        self.feature_dim = filters * len(self.kernel_sizes)
        self.heads = nn.ModuleDict(
            {t: nn.Linear(self.feature_dim, n) for t, n in num_classes.items()}
        )
        self.int8: Int8Convs | None = None
        if label_vectors:
            self.use_label_knowledge(label_vectors, trained, knowledge_head)

    def use_label_knowledge(
        self,
        label_vectors: Mapping[str, torch.Tensor],
        trained: Mapping[str, torch.Tensor] | None = None,
        kind: str = "label-knowledge",
    ) -> None:
        """Give these tasks a head with these class vectors: a :class:`LabelKnowledgeHead`
        (``kind="label-knowledge"``) or a :class:`LabelWeightsHead` (``"label-weights"``)."""
        if kind not in KNOWLEDGE_HEADS:
            raise ValueError(f"a knowledge head is one of {KNOWLEDGE_HEADS}, not {kind!r}")
        for t, v in label_vectors.items():
            head = self.heads[t] if t in self.heads else None  # noqa: SIM401 (no ModuleDict.get)
            n = int(head.out_features) if isinstance(head, nn.Linear) else None
            if n is None or tuple(v.shape) != (n, self.embedding.embedding_dim):
                raise ValueError(f"label vectors of {t} are {tuple(v.shape)}, expected "
                                 f"{(n, self.embedding.embedding_dim)}")  # fmt: skip
            seen = (trained or {}).get(t, torch.ones(n, dtype=torch.bool))
            self.heads[t] = (
                LabelKnowledgeHead(v, seen, self.feature_dim)
                if kind == "label-knowledge"
                else LabelWeightsHead(v, seen, self.feature_dim)
            )

    @property
    def knowledge_tasks(self) -> tuple[str, ...]:
        """The tasks whose head carries the graph's term vectors, in the heads' order."""
        return tuple(t for t, h in self.heads.items() if isinstance(h, KnowledgeHead))

    @property
    def attends(self) -> bool:
        """Whether a head reads the windows' vectors (worth computing only then)."""
        return any(isinstance(h, LabelKnowledgeHead) for h in self.heads.values())

    def use_int8(self) -> MTCNN:
        """Score with int8 convolutions (:class:`Int8Convs`) from now on: inference only."""
        self.int8 = Int8Convs(
            [cast(nn.Conv1d, c) for c in self.convs], self.kernel_sizes, self.embedding.weight
        )
        return self.eval()

    def encode(
        self, tokens: torch.Tensor, lengths: torch.Tensor | None = None, windows: bool = False
    ) -> Encoded:
        """The document vector, and the windows' vectors when a label-knowledge head reads them;
        ``windows``: also which window each filter's max-pool took (for evidence)."""
        return self.encode_vectors(self.embedding(tokens), lengths, windows)

    def encode_vectors(
        self, emb: torch.Tensor, lengths: torch.Tensor | None = None, windows: bool = False
    ) -> Encoded:
        """:meth:`encode` from the word vectors ``[B, T, D]`` (what gradient attributions vary)."""
        x = emb.transpose(1, 2)  # [B, D, T]
        pooled, maps, argmax = [], [], []
        convolved = (
            self.int8(emb)
            if self.int8 is not None
            else [torch.relu(conv(x)) for conv in self.convs]
        )
        for k, h in zip(self.kernel_sizes, convolved, strict=True):  # h: [B, F, T-k+1]
            maps.append(h)
            if lengths is not None:
                starts = torch.arange(h.shape[-1], device=h.device)
                inside = starts[None, :] <= (lengths[:, None] - k).clamp(min=0)
                h = h.masked_fill(~inside[:, None, :], float("-inf"))
            best = h.max(dim=-1)
            pooled.append(best.values)
            argmax.append(best.indices)
        z = torch.cat(pooled, dim=1)
        if not self.attends:
            return Encoded(z, argmax=argmax if windows else None)
        # windows that every width has: those starting at 0 .. T - widest
        widest = max(self.kernel_sizes)
        w = x.shape[-1] - widest + 1
        context = torch.cat([h[..., :w] for h in maps], dim=1).transpose(1, 2)  # [B, W, F·K]
        starts = torch.arange(w, device=x.device)[None, :]
        if lengths is None:
            inside = starts.expand(len(emb), w) >= 0
        else:
            inside = starts <= (lengths[:, None] - widest).clamp(min=0)
        # a window's own words: the mean of its token vectors (padding counts as zeros)
        words = F.avg_pool1d(x, widest, stride=1).transpose(1, 2)  # [B, W, D]
        return Encoded(z, words, context, inside, argmax if windows else None)

    def window_scores(
        self, enc: Encoded, task: str, classes: torch.Tensor
    ) -> list[tuple[int, torch.Tensor]]:
        """How much each window of the report supports each of ``classes`` (``[B, K]`` class
        indices): per window width ``k``, ``[B, K, W]`` scores of the windows starting at
        token ``0 .. W-1`` (``-inf`` for an attention window outside the report).

        A label-knowledge head's evidence is its attention: ``scale`` times the cosine of each
        window (the widest width) with the class's query, whose best is what the logit adds.
        A linear head (plain, or label-weights with its graph-made weights) sums, per window,
        the contributions ``z_f · w_cf`` of the filters whose max-pool that window won: the
        logit is the sum of those over the windows, plus the bias."""
        head = self.heads[task]
        if isinstance(head, LabelKnowledgeHead):
            assert enc.tokens is not None and enc.context is not None and enc.inside is not None
            # in fp32 whatever the encoding ran in (a bf16 batch's windows are bf16)
            keys = head.key(enc.tokens.float()) + head.context(enc.context.float())
            keys = F.normalize(keys, dim=-1)
            queries = F.normalize(head.query(head.label_vectors), dim=-1)[classes]  # [B, K, d]
            cos = torch.einsum("bwd,bkd->bkw", keys.float(), queries.float())
            cos = cos.masked_fill(~enc.inside[:, None, :], float("-inf"))
            return [(max(self.kernel_sizes), head.scale.float() * cos)]
        if enc.argmax is None:
            raise ValueError("encode(..., windows=True) keeps the windows that evidence needs")
        if isinstance(head, LabelWeightsHead):
            weight = head.project(head.label_vectors) + head.trained[:, None] * head.plain.weight
        else:
            weight = cast(nn.Linear, head).weight
        contrib = enc.z.float()[:, None, :] * weight.float()[classes]  # [B, K, F·K]
        b, k_, f = classes.shape[0], classes.shape[1], self.feature_dim // len(self.kernel_sizes)
        out = []
        for i, (k, idx) in enumerate(zip(self.kernel_sizes, enc.argmax, strict=True)):
            w = int(idx.max().item()) + 1  # windows past the last one a filter took score 0
            scores = torch.zeros(b, k_, w, device=contrib.device)
            where = idx[:, None, :].expand(b, k_, f)
            scores.scatter_add_(2, where, contrib[:, :, i * f : (i + 1) * f])
            out.append((k, scores))
        return out

    def features(self, tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """The shared document vector ``[B, F·K]``."""
        return self.encode(tokens, lengths).z

    def classify(self, enc: Encoded) -> dict[str, torch.Tensor]:
        """Logits per task (dropout on the document vector while training)."""
        z = self.dropout(enc.z)
        return {
            t: head(z, enc) if isinstance(head, KnowledgeHead) else head(z)
            for t, head in self.heads.items()
        }

    def forward(
        self, tokens: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Logits per task."""
        return self.classify(self.encode(tokens, lengths))
