"""Benchmark: where one training epoch of the MT-CNN spends its time, per part.

Runs one epoch (training and validation) of ``lightning fit -c CONFIG`` for each of
``--heads`` (default: label-knowledge, then plain as the baseline of the same run) and clocks,
with a Lightning callback and module hooks:

* data: the training loop waiting for its next batch (DataLoader, collation);
* embedding, convolutions (the ``Conv1d`` layers), heads (each task's head; for the
  label-knowledge heads, the windows' keys and the window × class products): the forward
  pass, by forward hooks on those modules;
* other forward: the rest of the training step (ReLU, max-pool, the windows' vectors, the
  losses);
* backward; optimizer step (and what Lightning does up to the next batch);
* validation forward (the validation loop, its batches included) and validation decoding
  (the decoder fitted at the epoch's end, and its metrics).

Prints the table (seconds, share of the epoch, and each part of the first heads against the
baseline's); ``--docs PAGE`` also writes it into a documentation page with the command, date,
machine and commit. No MLflow run is made.

    python bench/epoch_profile.py --docs docs/results/epoch-profile.md

needs the TCGA tables (``../shared/data``), the NCI graph and kg-joint vectors (the commands
at the top of ``configs/mtcnn-tcga.yaml``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning import Callback, LightningModule, Trainer

from kinpath.phenotyping.precision import bf16_instructions

ROOT = Path(__file__).resolve().parents[1]
PARTS = (
    ("data", "data loading"),
    ("embedding", "embedding lookup"),
    ("convolutions", "convolutions"),
    ("heads", "heads (label-knowledge: window × class products)"),
    ("other_forward", "other forward (ReLU, max-pool, window vectors, losses)"),
    ("backward", "backward"),
    ("optimizer", "optimizer step"),
    ("val_forward", "validation forward"),
    ("val_decoding", "validation decoding (decoder fit, metrics)"),
    ("rest", "the rest (Lightning, logging)"),
)


class Clock(Callback):
    """Seconds per part of one training epoch (see the module's docstring)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.batches = 0
        self.precision = ""  # what the fit trained in (the config may say auto)
        self._mark = 0.0
        self._forward_parts = 0.0
        self._training = False
        self._started_at: dict[int, float] = {}

    def attach(self, module: LightningModule) -> None:
        net: Any = module.net
        groups = {"embedding": [net.embedding], "convolutions": list(net.convs),
                  "heads": list(net.heads.values())}  # fmt: skip
        for part, modules in groups.items():
            for m in modules:
                m.register_forward_pre_hook(self._started)
                m.register_forward_hook(self._post(part))
        decoding = module.on_validation_epoch_end

        def timed() -> None:
            t = time.perf_counter()
            decoding()
            self.seconds["val_decoding"] += time.perf_counter() - t

        module.on_validation_epoch_end = timed  # type: ignore[method-assign]

    def _started(self, m: torch.nn.Module, _inputs: object) -> None:
        self._started_at[id(m)] = time.perf_counter()

    def _post(self, part: str) -> Callable[[torch.nn.Module, object, object], None]:
        def hook(m: torch.nn.Module, _inputs: object, _out: object) -> None:
            if self._training:
                spent = time.perf_counter() - self._started_at[id(m)]
                self.seconds[part] += spent
                self._forward_parts += spent

        return hook

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._epoch = self._mark = time.perf_counter()

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: object,
                             batch_idx: int) -> None:  # fmt: skip
        now = time.perf_counter()
        self.seconds["data"] += now - self._mark
        self._mark, self._forward_parts, self._training = now, 0.0, True

    def on_before_backward(
        self, trainer: Trainer, pl_module: LightningModule, loss: object
    ) -> None:
        now = time.perf_counter()
        self.seconds["other_forward"] += now - self._mark - self._forward_parts
        self._mark, self._training = now, False

    def on_after_backward(self, trainer: Trainer, pl_module: LightningModule) -> None:
        now = time.perf_counter()
        self.seconds["backward"] += now - self._mark
        self._mark = now

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: object,
                           batch: object, batch_idx: int) -> None:  # fmt: skip
        now = time.perf_counter()
        self.seconds["optimizer"] += now - self._mark
        self._mark = now
        self.batches += 1

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._validation = time.perf_counter()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        spent = time.perf_counter() - self._validation
        self.seconds["val_forward"] += spent - self.seconds["val_decoding"]
        self._mark = time.perf_counter()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        total = time.perf_counter() - self._epoch
        self.seconds["rest"] = total - sum(v for k, v in self.seconds.items() if k != "rest")
        self.seconds["total"] = total


class Nodes(Callback):
    """``torch.profiler`` over training batches ``[skip, skip + n)``: seconds of backward per
    autograd node (the engine runs one node at a time, so their inclusive times add up)."""

    PREFIX = "autograd::engine::evaluate_function: "

    def __init__(self, skip: int = 5, n: int = 20) -> None:
        self.skip, self.n = skip, n
        self.seconds: dict[str, float] = {}

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: object,
                             batch_idx: int) -> None:  # fmt: skip
        if batch_idx == self.skip:
            self._prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            self._prof.__enter__()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: object,
                           batch: object, batch_idx: int) -> None:  # fmt: skip
        if batch_idx == self.skip + self.n - 1:
            self._prof.__exit__(None, None, None)
            for e in self._prof.key_averages():
                if e.key.startswith(self.PREFIX):
                    self.seconds[e.key[len(self.PREFIX) :]] = e.cpu_time_total / 1e6


def profile(heads: str, a: argparse.Namespace, tmp: Path) -> tuple[Clock, Nodes]:
    from kinpath.phenotyping.cli import cli, nested

    options = {
        "data.embeddings": str(a.embeddings), "data.graph": str(a.graph), "model.heads": heads,
        "seed_everything": a.seed, "trainer.max_epochs": 1, "trainer.logger": False,
        "trainer.num_sanity_val_steps": 0, "trainer.enable_progress_bar": False,
        "trainer.limit_train_batches": a.limit_train_batches, "trainer.enable_model_summary": False,
        "checkpoint.dirpath": str(tmp / heads),
    } | ({"trainer.deterministic": "warn"} if a.deterministic else {})  # fmt: skip
    c = cli(nested(options) | {"config": [str(a.config)]}, run=False, quiet=True)
    clock = Clock()
    clock.precision = str(c.trainer.precision)
    clock.attach(c.model)
    c.trainer.callbacks.append(clock)  # type: ignore[attr-defined]
    c.trainer.fit(c.model, datamodule=c.datamodule)
    # the backward's split, in a second short fit of the same model and data: the profiler's
    # own cost stays out of the epoch's clock
    nodes = Nodes()
    Trainer(max_epochs=1, limit_train_batches=nodes.skip + nodes.n, limit_val_batches=0,
            precision=c.trainer.precision, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, callbacks=[nodes]).fit(c.model, datamodule=c.datamodule)  # fmt: skip
    return clock, nodes


def backward_table(nodes: dict[str, Nodes], top: int = 8) -> str:
    names = list(nodes)
    first = nodes[names[0]].seconds
    total = {n: sum(v.seconds.values()) for n, v in nodes.items()}
    head = ["autograd node", *(f"{n}: s (share)" for n in names)]
    rows = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for key in sorted(first, key=first.__getitem__, reverse=True)[:top]:
        cells = [f"`{key}`"]
        for n in names:
            s = nodes[n].seconds.get(key, 0.0)
            cells.append(f"{s:.2f} ({100 * s / total[n]:.0f}%)" if s else "—")
        rows.append("| " + " | ".join(cells) + " |")
    rows.append("| **backward** | " + " | ".join(f"{total[n]:.2f} (100%)" for n in names) + " |")
    return "\n".join(rows)


def render(clocks: dict[str, Clock], nodes: dict[str, Nodes], a: argparse.Namespace) -> str:
    names = list(clocks)
    first, base = names[0], names[-1]
    head = ["part", *(f"{n}: s (share)" for n in names)]
    if len(names) > 1:
        head.append(f"{first} / {base}")
    rows = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for key, label in (*PARTS, ("total", "**epoch**")):
        cells = [label]
        for n in names:
            s, total = clocks[n].seconds.get(key, 0.0), clocks[n].seconds["total"]
            cells.append(f"{s:.1f} ({100 * s / total:.0f}%)")
        if len(names) > 1:
            b = clocks[base].seconds.get(key, 0.0)
            cells.append(f"{clocks[first].seconds.get(key, 0.0) / b:.2f}" if b > 0.05 else "—")
        rows.append("| " + " | ".join(cells) + " |")
    found = bf16_instructions()
    cpu = (
        f"bf16 in hardware ({', '.join(found)})"
        if found
        else "no bf16 instructions (avx512_bf16, amx_bf16)"
    )
    trained = ", ".join(sorted({c.precision for c in clocks.values()}))
    batches = ", ".join(f"{n} {c.batches}" for n, c in clocks.items())
    node = next(iter(nodes.values()))
    return (
        "# Epoch profile\n\n"
        f"One training epoch and its validation, `{a.config.relative_to(ROOT)}` with the "
        f"{a.embeddings.name} vectors, per heads (training batches: {batches}); torch "
        f"{torch.__version__} on {torch.get_num_threads()} threads, {cpu}, trained in "
        f"`{trained}`. Each part's "
        "seconds and share of the epoch; the last column is the first heads' time over the "
        "baseline's, part by part.\n\n" + "\n".join(rows) + "\n\n"
        "The backward pass by autograd node (the most costly of the first heads'), over "
        f"training batches {node.skip}-{node.skip + node.n - 1} of a second short fit of the same "
        "model under `torch.profiler` (CPU time of each node, its kernels included; the "
        "profiler's own cost makes these slower than the table above):\n\n"
        + backward_table(nodes)
        + "\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "configs/mtcnn-tcga.yaml")
    ap.add_argument("--embeddings", type=Path, default=ROOT / "runs/emb-tcga/kg-joint")
    ap.add_argument("--graph", type=Path, default=ROOT / "runs/nci")
    ap.add_argument("--heads", nargs="+", default=["label-knowledge", "plain"])
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--deterministic", action="store_true",
                    help="trainer.deterministic: warn, as kinpath run's reproducible sets it")  # fmt: skip
    ap.add_argument("--limit-train-batches", type=float, default=1.0,
                    help="a share (≤ 1) or a number of training batches; 1.0: the whole epoch")  # fmt: skip
    ap.add_argument("--docs", type=Path, default=None, help="also write the table into this page")
    a = ap.parse_args()
    a.config = a.config.resolve()
    if a.limit_train_batches > 1:
        a.limit_train_batches = int(a.limit_train_batches)
    for p in (a.embeddings, a.graph):
        if not p.exists():
            sys.exit(f"{p} is missing: make it with the commands at the top of {a.config.name}")
    os.chdir(ROOT)  # the config's table paths are relative to the project
    with tempfile.TemporaryDirectory() as tmp:
        made = {h: profile(h, a, Path(tmp)) for h in a.heads}
    page = render({h: m[0] for h, m in made.items()}, {h: m[1] for h, m in made.items()}, a)
    print(page)
    if a.docs is not None:
        from kinpath.pipelines.report import publish_page

        print(f"docs: {publish_page(page, a.docs, 'python ' + shlex.join(sys.argv))}")


if __name__ == "__main__":
    main()
