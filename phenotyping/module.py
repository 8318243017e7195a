"""The LightningModule around :class:`~kinpath.phenotyping.network.MTCNN`: loss, metrics, decoding.

* Loss: the sum over tasks of cross-entropy over the reports that carry that
  task's label. A missing (or unseen-in-training) label is masked out: a task
  with no label in a batch adds exactly zero loss and zero gradient to its head.
* Metrics, per task on validation and test: accuracy, micro-F1 and macro-F1,
  logged as ``val/<task>/macro_f1`` etc.; ``val/loss`` drives early stopping.
* Decoding: at the end of every validation epoch a :class:`~kinpath.phenotyping.decode.Decoder`
  (temperatures, bounded thresholds, back-off thresholds) is fitted on the
  validation predictions with the data's coding rules (graph hierarchy, valid
  site × histology pairs); it is saved in the checkpoint (so the best
  checkpoint carries its epoch's decoder). At test start the training sites'
  centroids and the out-of-scope threshold are computed
  (:mod:`kinpath.phenotyping.scope`). Test metrics are on the decoded output:
  ``test/<task>/coverage`` (auto-coded share), ``.../covered_accuracy``,
  ``.../backoff`` and ``.../backoff_accuracy``, ``test/edit_checks``,
  ``test/out_of_scope``, ``test/contradictions``; F1 is the heads' argmax.
* Several report tables (the data's ``source_of``): test metrics are also
  logged per table, ``test/<table>/<task>/macro_f1``; the unprefixed ones pool them.
* At test end the module keeps its test probabilities, labels and accuracy–coverage curves
  (``test_outputs``); plots and uploads are the callbacks' (:mod:`kinpath.phenotyping.callbacks`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F  # noqa: N812

from kinpath.common import InputError
from kinpath.phenotyping.decode import Decoder, decode, fit_decoder
from kinpath.phenotyping.drift import Reference, Scored, fit_reference
from kinpath.phenotyping.evaluate import (
    before_thresholds,
    coverage_curves,
    split_metrics,
    test_metrics,
    truth_names,
)
from kinpath.phenotyping.hierarchy import Hierarchy
from kinpath.phenotyping.network import HEADS, KNOWLEDGE_HEADS, MTCNN, Heads
from kinpath.phenotyping.scope import similarity, site_centroids

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TestOutputs:
    """The last test's class probabilities, labels (-1: none) and accuracy–coverage curves."""

    probs: dict[str, np.ndarray]
    labels: np.ndarray
    curves: dict[str, tuple]


def masked_multitask_loss(
    logits: dict[str, torch.Tensor],
    labels: torch.Tensor,
    tasks: list[str],
    weights: dict[str, torch.Tensor] | None = None,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Sum over tasks of the mean cross-entropy of the labelled reports (class-weighted and
    label-smoothed when asked).

    ``labels`` is ``[B, tasks]``; entries below 0 (missing, or unseen in
    training) are masked. A task without any label in the batch is left out of
    the graph entirely, so its head gets no gradient.
    """
    per_task: dict[str, torch.Tensor] = {}
    for j, t in enumerate(tasks):
        y = labels[:, j]
        keep = y >= 0
        if keep.any():
            w = None if weights is None else weights[t]
            per_task[t] = F.cross_entropy(
                logits[t][keep].float(), y[keep], weight=w, label_smoothing=label_smoothing
            )
    if per_task:
        return torch.stack(list(per_task.values())).sum(), per_task
    # nothing labelled at all: a zero that still belongs to the graph, with zero gradient
    return sum((x.sum() * 0.0 for x in logits.values()), torch.zeros(())), per_task


def label_vectors(embedding: torch.Tensor, terms: list[list[list[int]]]) -> torch.Tensor:
    """``[C, D]``: per class, the mean over its terms of each term's mean word vector (token
    ids above the unknown one only); zeros for a class without a known term word."""
    out = torch.zeros(len(terms), embedding.shape[1])
    for c, class_terms in enumerate(terms):
        means = [embedding[[i for i in ids if i > 1]].mean(0) for ids in class_terms
                 if any(i > 1 for i in ids)]  # fmt: skip
        if means:
            out[c] = torch.stack(means).mean(0)
    return out


class MTCNNModule(pl.LightningModule):
    def __init__(
        self,
        vocab_size: int = 2,
        num_classes: dict[str, int] | None = None,
        embedding_dim: int = 300,
        filters: int = 300,
        kernel_sizes: list[int] = [3, 4, 5],  # noqa: B006
        dropout: float = 0.5,
        init: Literal["pretrained", "random"] = "pretrained",
        freeze_embeddings: bool = False,
        lr: float = 1e-3,
        embedding_lr: float | None = None,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        lr_schedule: Literal["constant", "one-cycle"] = "constant",
        warmup_fraction: float = 0.3,
        target_accuracy: float = 0.97,
        task_targets: dict[str, float] | None = None,
        class_weights: dict[str, list[float]] | None = None,
        label_smoothing: float = 0.0,
        label_maps: dict[str, list[str]] | None = None,
        init_vectors: torch.Tensor | None = None,
        coding_rules: dict | None = None,
        heads: Heads = "plain",
        label_terms: dict[str, list[list[list[int]]]] | None = None,
        train_counts: dict[str, list[int]] | None = None,
        teacher: str | None = None,
        distill_weight: float = 0.5,
        distill_temperature: float = 2.0,
        teacher_init: int | None = None,
    ):
        """The multitask CNN and how it is trained.

        Args:
            vocab_size: Vocabulary size (linked from the data).
            num_classes: Classes per task (linked from the data).
            embedding_dim: Word vector size (linked from the data's embeddings).
            filters: Filters per convolution window.
            kernel_sizes: Convolution window widths.
            dropout: Dropout before the heads.
            init: "pretrained" (the embeddings' vectors) or "random" (same vocabulary, random vectors).
            freeze_embeddings: Keep the word vectors fixed.
            lr: Adam learning rate.
            embedding_lr: Learning rate of the word-vector table (None: ``lr``).
            betas: Adam betas.
            weight_decay: Adam weight decay.
            lr_schedule: "constant" (``lr`` throughout) or "one-cycle": each learning rate
                rises from 1/25 of its value to it over the first ``warmup_fraction`` of the
                fit's steps, then falls along a cosine to near zero at the last step of
                ``trainer.max_epochs``; set max_epochs to the epochs the fit should take.
            warmup_fraction: The share of a one-cycle fit's steps spent rising.
            target_accuracy: Accuracy the abstention thresholds must reach.
            task_targets: Per-task targets overriding target_accuracy.
            class_weights: Per-task class weights of the training loss (linked from the data
                when enabled there); validation and test losses stay unweighted, so that
                checkpoints are chosen and runs compared on the same quantity.
            label_smoothing: Label smoothing of the training loss (0: none).
            label_maps: Class names per task (linked from the data).
            init_vectors: Initial word vectors (linked from the data).
            coding_rules: The graph's back-off hierarchy and the valid site × histology
                pairs (linked from the data).
            heads: "plain" (a linear layer per task), "label-knowledge": the site, subsite
                and histology heads attend over the report with their codes' graph term
                vectors as queries (phenotyping.network.LabelKnowledgeHead), or
                "label-weights": those heads' class weights are a learned projection of the
                same vectors (phenotyping.network.LabelWeightsHead). Both need the data's
                graph, whose codes that training lacks then become classes too.
            label_terms: Per task, per class, its graph terms as token ids (linked from
                the data); the label vectors are their mean initial word vectors.
            train_counts: Training reports per class of each task (linked from the data).
            teacher: A bundle folder (a seed ensemble's, ``kinpath registry ensemble``, or a
                fit's; ``mlflow artifacts download -r RUN -a bundle``) to distil: its class
                probabilities on the training reports, computed once at the start of the
                fit, are soft targets beside the labels. It must read reports as the data
                does (same vocabulary and classes). None: labels only.
            distill_weight: The soft targets' share of the training loss, α in
                ``(1 - α) · cross-entropy + α · T² · KL(teacher_T ‖ model_T)`` per task.
            distill_temperature: T, the temperature both distributions are softened by.
            teacher_init: With a teacher: start from its network number ``teacher_init``
                (0 for a single fit's bundle; a seed ensemble's members in its order)
                rather than from fresh weights, so the student begins where one seed ended
                and the soft targets move it toward the ensemble. None: fresh weights.
        """
        super().__init__()
        if init not in ("pretrained", "random"):
            raise ValueError(f"init must be 'pretrained' or 'random', not {init!r}")
        if heads not in HEADS:
            raise ValueError(f"heads must be one of {HEADS}, not {heads!r}")
        if lr_schedule not in ("constant", "one-cycle"):
            raise ValueError(f"lr_schedule must be 'constant' or 'one-cycle', not {lr_schedule!r}")
        if not 0.0 < warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must lie between 0 and 1, not {warmup_fraction}")
        if teacher_init is not None and not teacher:
            raise ValueError("teacher_init needs a teacher (model.teacher)")
        self.save_hyperparameters(ignore=["init_vectors", "coding_rules", "label_terms"])
        num_classes = num_classes or {}
        self.tasks = list(num_classes)
        if heads in KNOWLEDGE_HEADS and not label_terms:
            raise ValueError(f"heads {heads!r} needs the data's graph (data.graph)")
        self.net = MTCNN(
            vocab_size,
            num_classes,
            embedding_dim,
            filters,
            kernel_sizes,
            dropout,
            init_vectors if init == "pretrained" else None,
            freeze_embeddings,
        )
        # one report of 500 tokens: Lightning's model summary counts the FLOPs of a forward pass
        # on it (without an example it printed "Total FLOPs: 0")
        self.example_input_array = (torch.ones(1, 500, dtype=torch.long), torch.tensor([500]))
        if init == "random" and init_vectors is not None:
            # random vectors on the pretrained ones' scale, so only the values differ
            with torch.no_grad():
                self.net.embedding.weight.normal_(0.0, float(init_vectors[2:].std()))
                self.net.embedding.weight[0].zero_()
        if heads in KNOWLEDGE_HEADS and label_terms:
            # the label vectors come from the network's own initial word vectors (random
            # ones for init=random: a term then still matches the same word in a report)
            table = self.net.embedding.weight.detach()
            self.net.use_label_knowledge(
                {t: label_vectors(table, x) for t, x in label_terms.items() if t in num_classes},
                {t: torch.tensor(c) > 0 for t, c in (train_counts or {}).items()
                 if t in label_terms},
                heads,
            )  # fmt: skip
        self._weights = (
            {t: torch.tensor(w, dtype=torch.float32) for t, w in class_weights.items()}
            if class_weights
            else None
        )
        rules = coding_rules or {}
        self.hierarchy = Hierarchy.from_dict(rules.get("hierarchy"))
        self.valid = (
            frozenset(tuple(x) for x in rules["valid"]) if rules.get("valid") is not None else None
        )
        self.decoder: Decoder | None = None
        self.test_outputs: TestOutputs | None = None
        self._teacher: dict[str, torch.Tensor] | None = None  # per task, [data rows, classes]
        self.centroids: np.ndarray | None = None
        self.drift_reference: Reference | None = None  # the validation split's, for drift checks
        self._before: dict[str, float] = {}  # per-task thresholds as before decoding existed
        # per split, per batch: probabilities, labels, row index, similarity to training
        self._outputs: dict[str, list[tuple[dict, np.ndarray, np.ndarray, np.ndarray]]] = (
            defaultdict(list)
        )

    def forward(
        self, tokens: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        return self.net(tokens, lengths)

    def _weights_on(self, device: torch.device) -> dict[str, torch.Tensor] | None:
        if self._weights is None:
            return None
        return {t: w.to(device) for t, w in self._weights.items()}

    def on_fit_start(self) -> None:
        """With a teacher: its class probabilities on every training report, once."""
        path = self.hparams.get("teacher")
        dm = getattr(self.trainer, "datamodule", None)
        if not path or dm is None:
            return
        from kinpath.phenotyping.bundle import check_reads_like, load_bundle, score_ids

        teacher = load_bundle(Path(path), precision="fp32")
        check_reads_like(teacher, dm.vocab.itos, dm.label_maps)
        start = self.hparams.get("teacher_init")
        if start is not None:
            if not 0 <= start < len(teacher.nets):
                raise InputError(f"teacher_init {start}: the teacher has {len(teacher.nets)} "
                                 f"network(s), numbered from 0", path=Path(path))  # fmt: skip
            try:
                self.net.load_state_dict(teacher.nets[start].state_dict())
            except RuntimeError as e:  # another architecture: filters, widths, heads
                raise InputError(f"the teacher's network {start} is not this model's shape: "
                                 f"{' '.join(x.strip() for x in str(e).splitlines()[:2])}",
                                 path=Path(path)) from None  # fmt: skip
            log.info("the student starts from the teacher's network %d", start)
        rows = dm.splits["train"]
        log.info("distilling %s (%d network(s)): scoring the %d training reports",
                 path, len(teacher.nets), len(rows))  # fmt: skip
        probs, _ = score_ids(teacher, [dm.ids[i] for i in rows])
        n = len(dm.ids)
        self._teacher = {}
        for t in self.tasks:
            full = torch.zeros(n, probs[t].shape[1])
            full[torch.as_tensor(rows)] = torch.as_tensor(probs[t])
            self._teacher[t] = full

    def _distill_loss(self, logits: dict[str, torch.Tensor], index: torch.Tensor) -> torch.Tensor:
        """Sum over tasks of ``T² · KL(teacher_T ‖ model_T)``, averaged over the batch."""
        assert self._teacher is not None
        temp = float(self.hparams.get("distill_temperature", 2.0))
        total = torch.zeros((), device=self.device)
        for t in self.tasks:
            p = self._teacher[t][index.cpu()].to(self.device)
            soft = torch.softmax(torch.log(p.clamp_min(1e-12)) / temp, -1)
            logq = torch.log_softmax(logits[t].float() / temp, -1)
            total = total + F.kl_div(logq, soft, reduction="batchmean") * temp**2
        return total

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(batch["tokens"], batch["lengths"])
        loss, per_task = masked_multitask_loss(
            logits,
            batch["labels"],
            self.tasks,
            self._weights_on(self.device),
            self.hparams.get("label_smoothing", 0.0),
        )
        bs = len(batch["tokens"])
        if self._teacher is not None:
            alpha = float(self.hparams.get("distill_weight", 0.5))
            kd = self._distill_loss(logits, batch["index"])
            self.log("train/distill_loss", kd, on_step=False, on_epoch=True, batch_size=bs)
            loss = (1 - alpha) * loss + alpha * kd
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        for t, v in per_task.items():
            self.log(f"train/{t}/loss", v, on_step=False, on_epoch=True, batch_size=bs)
        return loss

    def _eval_step(self, batch: dict[str, torch.Tensor], split: str) -> None:
        enc = self.net.encode(batch["tokens"], batch["lengths"])
        logits = self.net.classify(enc)
        z = enc.z
        loss, _ = masked_multitask_loss(logits, batch["labels"], self.tasks)
        self.log(f"{split}/loss", loss, prog_bar=split == "val", batch_size=len(batch["tokens"]))
        probs = {t: torch.softmax(v.float(), -1).cpu().numpy() for t, v in logits.items()}
        sim = (
            similarity(z.float().cpu().numpy(), self.centroids)
            if self.centroids is not None
            else np.full(len(z), np.nan)
        )
        self._outputs[split].append(
            (probs, batch["labels"].cpu().numpy(), batch["index"].cpu().numpy(), sim)
        )

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, object]:
        logits = self(batch["tokens"], batch["lengths"])
        return {
            "index": batch["index"],
            **{t: torch.softmax(v.float(), -1) for t, v in logits.items()},
        }

    def _gather(
        self, split: str
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
        outs = self._outputs.pop(split, [])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # DDP: every rank saw part of the split; metrics and thresholds need all of it
            parts: list[list] = [[] for _ in range(torch.distributed.get_world_size())]
            torch.distributed.all_gather_object(parts, outs)
            outs = [o for part in parts for o in part]
        probs = {t: np.concatenate([o[0][t] for o in outs]) for t in self.tasks}
        if not outs:
            return probs, np.zeros((0, len(self.tasks)), int), np.zeros(0, int), np.zeros(0)
        labels, index, sim = (np.concatenate([o[k] for o in outs]) for k in (1, 2, 3))
        return probs, labels, index, sim

    def _truth(self, labels: np.ndarray) -> dict[str, np.ndarray]:
        return truth_names(labels, self.tasks, self.hparams.get("label_maps") or {})

    def on_validation_epoch_end(self) -> None:
        probs, labels, _, _ = self._gather("val")
        if not len(labels):
            return
        self.log_dict(split_metrics("val", probs, labels, self.tasks))
        self.decoder = self._fit_decoder(probs, labels)
        d = decode(probs, self.decoder)
        for t in self.tasks:
            self.log(f"val/{t}/coverage", float((~d.abstain[t]).mean()))

    def on_test_start(self) -> None:
        """The decoder fitted on the validation split with these weights, the training sites'
        centroids and the out-of-scope threshold. Fitting it again here (seconds) rather than
        trusting the checkpoint's means a test always decodes with the code that runs it."""
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None:
            return
        val_z, val_y, probs = self._features(dm.eval_loader("val"))
        if not len(val_y):
            return
        sim = None
        if "site" in self.tasks:
            train_z, train_y, _ = self._features(dm.eval_loader("train"), classify=False)
            self.centroids = site_centroids(train_z, train_y[:, self.tasks.index("site")])
            sim = similarity(val_z, self.centroids)
        self.decoder = self._fit_decoder(probs, val_y, sim)
        self._before = before_thresholds(probs, val_y, self.tasks, self.decoder)
        # in the loader's order, as _features read them: each report's token ids
        ids = [b["tokens"][r, : int(n)].tolist() for b in dm.eval_loader("val")
               for r, n in enumerate(b["lengths"])]  # fmt: skip
        d = decode(probs, self.decoder, sim)
        self.drift_reference = fit_reference(
            Scored(val_z, ids, d.out_of_scope, d.probs, d.labels, self.decoder.thresholds),
            seed=int(self.hparams.get("seed", 0) or 0),
        )

    def _fit_decoder(
        self, probs: dict[str, np.ndarray], labels: np.ndarray, sim: np.ndarray | None = None
    ) -> Decoder:
        """The decoder for validation predictions (and their similarity to training)."""
        maps = self.hparams.get("label_maps") or {t: [] for t in self.tasks}
        return fit_decoder(
            probs, self._truth(labels), maps, self.hierarchy, self.valid,
            targets=self.hparams.get("task_targets") or {},
            target=self.hparams["target_accuracy"], similarity=sim,
        )  # fmt: skip

    @torch.inference_mode()
    def _features(
        self, batches: object, classify: bool = True
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Document vectors, labels and class probabilities of a loader's reports, in eval mode;
        without ``classify``, no probabilities (the heads, half of a label-knowledge network's
        forward, are not run)."""
        was = self.training
        self.eval()
        zs, ys, ps = [], [], []
        for b in batches:  # type: ignore[attr-defined]
            enc = self.net.encode(b["tokens"].to(self.device), b["lengths"].to(self.device))
            zs.append(enc.z.float().cpu().numpy())
            ys.append(b["labels"].numpy())
            if classify:
                logits = self.net.classify(enc)
                ps.append(
                    {t: torch.softmax(v.float(), -1).cpu().numpy() for t, v in logits.items()}
                )
        self.train(was)
        if not zs:
            empty = {t: np.zeros((0, 0)) for t in self.tasks}
            return np.zeros((0, 0)), np.zeros((0, len(self.tasks)), int), empty
        probs = {t: np.concatenate([p[t] for p in ps]) for t in self.tasks} if classify else {}
        return np.concatenate(zs), np.concatenate(ys), probs

    def on_test_epoch_end(self) -> None:
        probs, labels, index, sim = self._gather("test")
        if not len(labels):
            return
        sim_or_none = None if np.isnan(sim).all() else sim
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        maps = self.hparams.get("label_maps") or {}
        metrics, decoded = test_metrics(probs, labels, index, sim_or_none, self.decoder,
                                        self._before, dm, self.tasks, maps)  # fmt: skip
        self.log_dict(metrics)
        curves = {}
        if decoded is not None and self.decoder is not None:
            curves = coverage_curves(decoded, labels, self.decoder, self.tasks)
        # what the TestArtifacts callback draws and uploads (phenotyping.callbacks)
        self.test_outputs = TestOutputs(probs, labels, curves)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["decoder"] = self.decoder.as_dict() if self.decoder else None

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        d = checkpoint.get("decoder")
        self.decoder = Decoder.from_dict(d) if d else None

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        table = self.net.embedding.weight
        rest = [p for p in self.parameters() if p.requires_grad and p is not table]
        groups: list[dict] = [{"params": rest, "lr": hp["lr"]}]
        if table.requires_grad:
            groups.append({"params": [table], "lr": hp.get("embedding_lr") or hp["lr"]})
        opt = torch.optim.Adam(
            groups, lr=hp["lr"], betas=tuple(hp["betas"]), weight_decay=hp["weight_decay"]
        )
        if hp.get("lr_schedule", "constant") == "constant":
            return opt
        steps = int(self.trainer.estimated_stepping_batches)
        log.info("one-cycle learning rates over %d steps, rising for the first %.0f%%",
                 steps, 100 * hp["warmup_fraction"])  # fmt: skip
        # Adam's betas stay as configured: cycling beta1 ("momentum") is an SGD habit
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=[g["lr"] for g in groups],
            total_steps=steps,
            pct_start=hp["warmup_fraction"],
            anneal_strategy="cos",
            cycle_momentum=False,
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
