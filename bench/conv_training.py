"""Two levers on the convolutions' training cost, each against eager ``nn.Conv1d`` in the same run.

The MT-CNN's convolutions and their backward take most of a training epoch on CPU
(``bench/epoch_profile.py``: ``ConvolutionBackward0`` is 62% of a label-knowledge backward).
This times one training step of the encoder alone (embeddings → three widths of convolution
→ ReLU → max-pool → a scalar, forward and backward with the gradient to the word vectors, as
``freeze_embeddings: false`` trains) at the TCGA config's shapes, three ways:

* ``eager``: ``nn.Conv1d`` per width (oneDNN on CPU), what the model runs;
* ``one-gemm``: every width's offsets stacked into one matrix product ``[B·T, D] × [D, F·Σk]``
  and shifted sums (the int8 scoring path's formulation, here in fp32 with autograd);
* ``compiled``: the eager encoder under ``torch.compile`` (inductor; its compile time apart);
* ``bf16``: the eager encoder under CPU autocast to bfloat16, what ``trainer.precision:
  bf16-mixed`` runs; it can pay only where the processor multiplies bf16 in hardware
  (``avx512_bf16``, ``amx_bf16``: the run prints which it has).

Prints the median step of each and its ratio to eager's, and how far each one's gradient is
from eager's (fp32 ways agree to rounding; bf16 to its 8-bit mantissa).

    python bench/conv_training.py
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import cast

import torch
from torch import nn

from kinpath.phenotyping.network import MTCNN
from kinpath.pipelines.environment import machine, processor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16, help="configs/mtcnn-tcga.yaml: 16")
    ap.add_argument("--tokens", type=int, default=1500, help="max_length: 1500")
    ap.add_argument("--dim", type=int, default=300)
    ap.add_argument("--filters", type=int, default=100)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    net = MTCNN(10, {"site": 2}, args.dim, args.filters)
    convs = [c for c in net.convs if isinstance(c, nn.Conv1d)]
    widths = net.kernel_sizes

    def eager(emb: torch.Tensor) -> list[torch.Tensor]:
        x = emb.transpose(1, 2)
        return [torch.relu(c(x)) for c in convs]

    def one_gemm(emb: torch.Tensor) -> list[torch.Tensor]:
        stacked = torch.cat([c.weight[:, :, j] for c in convs for j in range(c.kernel_size[0])])
        y = emb @ stacked.T  # [B, T, F·Σk]
        out, at, f, t = [], 0, args.filters, emb.shape[1]
        for k, c in zip(widths, convs, strict=True):
            w = t - k + 1
            acc = y[:, 0:w, at : at + f] + cast(torch.Tensor, c.bias)
            for j in range(1, k):
                acc = acc + y[:, j : j + w, at + j * f : at + (j + 1) * f]
            out.append(torch.relu(acc).transpose(1, 2))
            at += k * f
        return out

    def bf16(emb: torch.Tensor) -> list[torch.Tensor]:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return eager(emb)

    def step_of(encoder: Callable[[torch.Tensor], list[torch.Tensor]]):
        def step(emb: torch.Tensor) -> torch.Tensor:
            return sum(
                (h.max(dim=-1).values.sum() + h.mean() for h in encoder(emb)), torch.zeros(())
            )

        return step

    emb0 = torch.randn(args.batch, args.tokens, args.dim)
    compiled = torch.compile(step_of(eager))
    ways = {"eager": step_of(eager), "one-gemm": step_of(one_gemm), "compiled": compiled,
            "bf16": step_of(bf16)}  # fmt: skip

    def timed_step(fn: Callable[[torch.Tensor], torch.Tensor]) -> tuple[float, torch.Tensor]:
        """One forward and backward: its seconds and the word vectors' gradient."""
        emb = emb0.clone().requires_grad_(True)
        t0 = time.perf_counter()
        fn(emb).backward()
        seconds = time.perf_counter() - t0
        net.zero_grad()
        assert emb.grad is not None
        return seconds, emb.grad

    first, grads = {}, {}
    for name, fn in ways.items():
        first[name], grads[name] = timed_step(fn)
    scale = grads["eager"].abs().max().item()
    for name in ("one-gemm", "compiled", "bf16"):
        gap = (grads[name].float() - grads["eager"]).abs().max().item()
        print(f"{name}: largest gradient difference from eager {gap:.2e} (of {scale:.2e})")

    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.steps):  # interleaved, so a change in the machine's speed hits all three
        for name, fn in ways.items():
            times[name].append(timed_step(fn)[0])
    base = statistics.median(times["eager"])
    print(f"\nbatch {args.batch} × {args.tokens} tokens × {args.dim} dims, {args.filters} filters "
          f"per width {widths}, {args.threads} threads, torch {torch.__version__}; {machine()}, "
          f"instruction sets {', '.join(processor()['instruction_sets']) or 'none listed'}")  # fmt: skip
    print("| way | median step (s) | / eager | first step (s) |")
    print("|---|---|---|---|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med:.3f} | {med / base:.2f} | {first[name]:.1f} |")


if __name__ == "__main__":
    main()
