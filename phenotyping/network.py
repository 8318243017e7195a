"""The multitask CNN (MT-CNN): one shared Kim-style CNN over a report, one head per task.

A plain ``nn.Module``, so batch inference loads it without Lightning. Shapes::

    tokens  [B, T] int64 (0 = padding)      lengths [B]
    embed   [B, T, D]  → transpose → [B, D, T]
    conv_k  [B, F, T-k+1]  for k in kernel_sizes, ReLU
    pool    [B, F]  max over the windows that lie inside the report
    concat  [B, F·K] → dropout → head_t [B, C_t]  for each task t

The max-pool is masked: a window that reaches into the padding never wins, so
a report's scores do not depend on how far its batch was padded. Defaults are
the published MT-CNN's (FrESCO): windows 3/4/5, 300 filters each, dropout 0.5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn


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
    ):
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
        self.heads = nn.ModuleDict(
            {t: nn.Linear(filters * len(self.kernel_sizes), n) for t, n in num_classes.items()}
        )

    def features(self, tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """The shared document vector ``[B, F·K]``."""
        x = self.embedding(tokens).transpose(1, 2)  # [B, D, T]
        pooled = []
        for k, conv in zip(self.kernel_sizes, self.convs, strict=True):
            h = torch.relu(conv(x))  # [B, F, T-k+1]
            if lengths is not None:
                windows = torch.arange(h.shape[-1], device=h.device)
                inside = windows[None, :] <= (lengths[:, None] - k).clamp(min=0)
                h = h.masked_fill(~inside[:, None, :], float("-inf"))
            pooled.append(h.max(dim=-1).values)
        return torch.cat(pooled, dim=1)

    def classify(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per task from document vectors ``[B, F·K]`` (dropout while training)."""
        z = self.dropout(z)
        return {t: head(z) for t, head in self.heads.items()}

    def forward(
        self, tokens: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Logits per task."""
        return self.classify(self.features(tokens, lengths))
