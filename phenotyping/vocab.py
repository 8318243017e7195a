"""The vocabulary, padding and batching that training and inference share.

Kept apart from :mod:`kinpath.phenotyping.data` so that the inference path
(:mod:`kinpath.phenotyping.bundle`, the registered model) imports torch but never
Lightning. Token 0 pads, token 1 is out-of-vocabulary; a batch is padded to
its longest report, at least the widest convolution window.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

PAD, UNK = 0, 1
MIN_TOKENS = 5  # the widest convolution window


class Vocabulary:
    def __init__(self, words: Sequence[str]):
        self.itos = ["<pad>", "<unk>", *words]
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def encode(self, tokens: Sequence[str]) -> list[int]:
        get = self.stoi.get
        return [get(t, UNK) for t in tokens]

    def __len__(self) -> int:
        return len(self.itos)


def collate(batch: list[tuple[list[int], list[int], int]]) -> dict[str, torch.Tensor]:
    """Pad to the longest report of the batch (at least the widest window)."""
    width = max(MIN_TOKENS, max(len(ids) for ids, _, _ in batch))
    tokens = torch.full((len(batch), width), PAD, dtype=torch.long)
    for i, (ids, _, _) in enumerate(batch):
        tokens[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return {
        "tokens": tokens,
        "lengths": torch.tensor([len(ids) for ids, _, _ in batch]),
        "labels": torch.tensor([y for _, y, _ in batch], dtype=torch.long),
        "index": torch.tensor([i for _, _, i in batch]),
    }
