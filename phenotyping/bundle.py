"""A trained phenotyper as a folder that scores reports without Lightning.

::

    network.json      the MTCNN's shape (vocabulary size, classes, filters, windows...),
                      the tasks, the longest report in tokens
    weights.pt        the MTCNN's state_dict
    vocab.txt         one token a line; line i is token id i (0 = padding, 1 = unknown)
    tokenizer/        the report tokenizer (embeddings.tokenize)
    label_maps.json   class names per task, in the heads' order
    decoder.json      temperatures, thresholds, back-off codes and thresholds, valid
                      site × histology pairs, out-of-scope threshold (phenotyping.decode)
    centroids.npy     the training sites' document-vector centroids (phenotyping.scope)
    drift.json        the validation split's aggregates that a drift check compares a batch
                      with (phenotyping.drift: moments, shares, code distributions; no
                      report, no report's vector)
    manifests.json    provenance: the embeddings' manifest (method, corpus checksum,
                      graph checksum), the training data's counts and, for label-knowledge
                      and label-weights heads, the checksum of the graph the label vectors
                      came from
    label_vectors.npz those heads only: per task, its classes' graph term vectors
                      (also in weights.pt, as the heads' buffers)

An ensemble (:func:`save_ensemble`: fits of one config that differ only in their
seed) is the same folder with ``"members": N`` in network.json, the other
members' ``weights-<i>.pt`` and ``centroids-<i>.npy`` beside the first's, and a
decoder fitted on the members' averaged validation probabilities. It scores a
report with every member and averages the class probabilities (and the
similarity to the training sites, each member against its own centroids). Its
``label_vectors.npz`` is the first member's (each member's are in its weights).

Nothing in it stamps the clock or names an MLflow run, so the same fit of the same inputs
writes the same bytes (:func:`kinpath.kg.graph.folder_sha256` of the folder is the
registered model's ``provenance.bundle_sha256``).

No report text is in it. :func:`encode` and :func:`score_ids` are the whole
inference path: tokenize, look up ids, cut to the longest length, sort by
length, batch padded to the batch's longest report, softmax per task (averaged
over an ensemble's members) and the similarity to the training sites;
:func:`kinpath.phenotyping.decode.decode` turns those into codes. Nothing here imports Lightning: a registered model loads
where only its inference requirements are installed.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, cast

import numpy as np
import torch

from kinpath.common import InputError
from kinpath.embeddings.tokenize import ReportTokenizer
from kinpath.kg.graph import folder_sha256
from kinpath.phenotyping.decode import Decoder, decode
from kinpath.phenotyping.drift import Reference
from kinpath.phenotyping.evidence import emitted_classes
from kinpath.phenotyping.network import MTCNN, KnowledgeHead
from kinpath.phenotyping.precision import PRECISIONS, Precision, native_bf16
from kinpath.phenotyping.scope import similarity
from kinpath.phenotyping.vocab import MIN_TOKENS, PAD, UNK, Vocabulary

if TYPE_CHECKING:
    from kinpath.phenotyping.data import ReportDataModule
    from kinpath.phenotyping.module import MTCNNModule


def save_bundle(folder: Path, module: MTCNNModule, dm: ReportDataModule) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    hp = module.hparams
    network = {
        "vocab_size": hp["vocab_size"],
        "num_classes": dict(hp["num_classes"]),
        "embedding_dim": hp["embedding_dim"],
        "filters": hp["filters"],
        "kernel_sizes": list(hp["kernel_sizes"]),
        "dropout": hp["dropout"],
        "tasks": list(module.tasks),
        "max_length": dm.hparams["max_length"],
        "heads": hp.get("heads", "plain"),
        "knowledge_tasks": list(module.net.knowledge_tasks),
    }
    (folder / "network.json").write_text(json.dumps(network, indent=2) + "\n")
    torch.save({k: v.cpu() for k, v in module.net.state_dict().items()}, folder / "weights.pt")
    (folder / "vocab.txt").write_text("".join(w + "\n" for w in dm.vocab.itos))
    dm.tokenizer.save(folder / "tokenizer")
    (folder / "label_maps.json").write_text(json.dumps(dm.label_maps, indent=2) + "\n")
    decoder = module.decoder or Decoder(dm.label_maps)
    (folder / "decoder.json").write_text(json.dumps(decoder.as_dict(), indent=1) + "\n")
    if module.centroids is not None:
        np.save(folder / "centroids.npy", module.centroids.astype(np.float32))
    if module.drift_reference is not None:
        module.drift_reference.save(folder / "drift.json")
    manifests = {"embeddings": dm.embedding_manifest, "data": dm.summary()}
    if hp.get("teacher"):  # distilled: which bundle taught it (its checksum, not its path)
        manifests["teacher"] = {"bundle_sha256": folder_sha256(Path(hp["teacher"]))}
    if module.net.knowledge_tasks:
        heads = {t: cast(KnowledgeHead, module.net.heads[t]) for t in module.net.knowledge_tasks}
        vectors = {t: h.label_vectors.cpu().numpy() for t, h in heads.items()}
        np.savez(folder / "label_vectors.npz", **vectors)
        manifests["label_vectors"] = {
            "graph_checksum": module.hierarchy.graph_checksum,
            "tasks": {t: list(v.shape) for t, v in vectors.items()},
            "classes_from_graph_alone": {t: int((h.trained == 0).sum()) for t, h in heads.items()},
        }
    (folder / "manifests.json").write_text(json.dumps(manifests, indent=2, default=str) + "\n")
    return folder


# what every member of an ensemble must share, byte for byte: the same reports read the same way
SHARED_FILES = ("vocab.txt", "label_maps.json", "tokenizer")


def save_ensemble(folder: Path, members: Sequence[Path], provenance: list[dict]) -> Path:
    """One bundle of several members' bundles (fits of one config, different seeds): the first
    member's folder, the others' weights and centroids beside it, ``provenance`` (one entry per
    member: its run, seed...) in manifests.json. The decoder is still the first member's: refit
    it on the ensemble's validation probabilities (:func:`kinpath.phenotyping.ensemble.build_ensemble`)."""
    if len(members) < 2:
        raise InputError(f"an ensemble needs two or more member bundles, not {len(members)}")
    if len(provenance) != len(members):
        raise ValueError("one provenance entry per member")
    first = Path(members[0])
    cfg = json.loads((first / "network.json").read_text())
    if cfg.get("members", 1) != 1:
        raise InputError("a member is itself an ensemble", path=first)
    for m in members[1:]:
        other = json.loads((Path(m) / "network.json").read_text())
        if other != cfg:
            diff = sorted(k for k in cfg.keys() | other.keys() if cfg.get(k) != other.get(k))
            raise InputError(f"its network differs from {first}'s in {diff}", path=m)
        for name in SHARED_FILES:
            if _tree_bytes(Path(m) / name) != _tree_bytes(first / name):
                raise InputError(f"its {name} differs from {first}'s: members must read "
                                 "reports alike (one embeddings folder, one data)", path=m)  # fmt: skip
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(first, folder)
    for i, m in enumerate(members[1:], start=1):
        shutil.copyfile(Path(m) / "weights.pt", folder / f"weights-{i}.pt")
        if (Path(m) / "centroids.npy").exists() != (first / "centroids.npy").exists():
            raise InputError("one member has training-site centroids and another not", path=m)
        if (Path(m) / "centroids.npy").exists():
            shutil.copyfile(Path(m) / "centroids.npy", folder / f"centroids-{i}.npy")
    (folder / "network.json").write_text(
        json.dumps(cfg | {"members": len(members)}, indent=2) + "\n"
    )
    manifests = json.loads((folder / "manifests.json").read_text())
    manifests["ensemble"] = {"members": provenance}
    (folder / "manifests.json").write_text(json.dumps(manifests, indent=2, default=str) + "\n")
    return folder


def _tree_bytes(path: Path) -> list[tuple[str, bytes]]:
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    return [(str(f.relative_to(path)), f.read_bytes()) for f in files if f.is_file()]


def member_file(name: str, i: int) -> str:
    """``weights.pt`` for the first member, ``weights-<i>.pt`` for the others."""
    stem, dot, ext = name.partition(".")
    return name if i == 0 else f"{stem}-{i}{dot}{ext}"


@dataclass(frozen=True)
class Bundle:
    nets: tuple[MTCNN, ...]  # one network, or an ensemble's members
    tokenizer: ReportTokenizer
    vocab: Vocabulary
    tasks: list[str]
    label_maps: dict[str, list[str]]
    decoder: Decoder
    centroids: tuple[np.ndarray, ...] | None  # per member
    max_length: int
    manifests: dict
    device: torch.device
    folder: Path
    precision: str = "fp32"  # what scores: fp32, int8 (convolutions) or bf16 (checked)
    drift: Reference | None = None  # the validation split's, for drift checks


# bf16 answers are scored again in fp32 where a task's two best classes are closer than
# this in probability: there bf16's rounding could change the answer. The gap is twice the
# largest move of a class probability that bf16 made on the TCGA champion's validation
# reports (docs/guides/deploy.md, "Speed")
BF16_RECHECK = 0.06


def resolve_device(device: str) -> torch.device:
    """``auto``: the first CUDA GPU where torch sees one, else the CPU; ``cpu``, ``cuda``,
    ``cuda:N`` as named. A GPU asked for where torch sees none is a ValueError that says so."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, not {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device}: torch sees no CUDA GPU on this machine")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, not {device!r}")
    return dev


def load_bundle(folder: Path, device: str = "cpu", precision: Precision = "auto") -> Bundle:
    """``device``: as :func:`resolve_device`. ``precision``: ``int8`` scores the
    convolutions as int8 matrix products (:class:`~kinpath.phenotyping.network.Int8Convs`,
    CPU only), ``bf16`` scores in bfloat16 autocast and scores again in fp32 the reports
    where a task's answer is a close call (:data:`BF16_RECHECK`), ``fp32`` as trained.
    ``auto`` is int8 for plain heads on a CPU with a quantized engine (fbgemm, x86); bf16
    for heads that carry the graph's term vectors on a CPU with bf16 in hardware
    (:func:`native_bf16`); fp32 elsewhere, a GPU included. Those heads are not int8 under
    ``auto``: with int8 convolutions, TCGA histology macro-F1 moved by more than the 0.01
    that ``bench/batch_throughput.py`` allows (docs/benchmarks.md)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    folder = Path(folder)
    cfg = json.loads((folder / "network.json").read_text())
    knowledge = {  # shapes only: the values are in weights.pt
        t: torch.zeros(cfg["num_classes"][t], cfg["embedding_dim"])
        for t in cfg.get("knowledge_tasks", [])
    }
    dev = resolve_device(device)
    cpu_int8 = dev.type == "cpu" and "fbgemm" in torch.backends.quantized.supported_engines
    if precision == "auto":
        if dev.type == "cpu" and cpu_int8 and not knowledge:
            precision = "int8"
        elif dev.type == "cpu" and knowledge and native_bf16():
            precision = "bf16"
        else:
            precision = "fp32"
    int8 = precision == "int8"
    if int8 and dev.type != "cpu":
        raise ValueError("int8 precision runs on the CPU only")
    nets = []
    for i in range(int(cfg.get("members", 1))):
        net = MTCNN(
            cfg["vocab_size"], cfg["num_classes"], cfg["embedding_dim"], cfg["filters"],
            cfg["kernel_sizes"], cfg["dropout"], label_vectors=knowledge,
            knowledge_head=cfg.get("heads", "label-knowledge"),
        )  # fmt: skip
        weights = folder / member_file("weights.pt", i)
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        net.to(dev).eval()
        if int8:
            net.use_int8()
        nets.append(net)
    vocab = Vocabulary((folder / "vocab.txt").read_text().splitlines()[2:])
    centroids = [folder / member_file("centroids.npy", i) for i in range(len(nets))]
    return Bundle(
        nets=tuple(nets),
        tokenizer=ReportTokenizer.load(folder / "tokenizer"),
        vocab=vocab,
        tasks=list(cfg["tasks"]),
        label_maps=json.loads((folder / "label_maps.json").read_text()),
        decoder=Decoder.from_dict(json.loads((folder / "decoder.json").read_text())),
        centroids=tuple(map(np.load, centroids)) if centroids[0].exists() else None,
        max_length=int(cfg["max_length"]),
        manifests=json.loads((folder / "manifests.json").read_text()),
        device=dev,
        folder=folder,
        precision=precision,
        drift=Reference.load(folder / "drift.json") if (folder / "drift.json").exists() else None,
    )


def check_reads_like(bundle: Bundle, itos: Sequence[str], label_maps: dict[str, list[str]]) -> None:
    """Raise unless data with this vocabulary and these classes gives the reports the token ids
    and class ids the bundle's networks were trained on."""
    if list(itos) != list(bundle.vocab.itos):
        raise InputError(
            "the data's vocabulary is not the model's (another embeddings folder or report "
            "table?): it would be scored on other token ids",
            path=bundle.folder / "vocab.txt",
        )
    if dict(label_maps) != dict(bundle.label_maps):
        diff = sorted(t for t in bundle.label_maps if label_maps.get(t) != bundle.label_maps[t])
        raise InputError(f"the data's classes differ from the model's for {diff}",
                         path=bundle.folder / "label_maps.json")  # fmt: skip


class Encoding(NamedTuple):
    """Reports as the networks read them."""

    ids: list[list[int]]  # token ids per report, cut to the bundle's longest length
    cut: np.ndarray  # bool per report: it was longer and was cut
    spans: list[np.ndarray]  # per report, [len(ids), 2] int: each token's characters in the text


def encode(bundle: Bundle, texts: Sequence[str]) -> Encoding:
    """Token ids per report, cut to the bundle's longest length, which were cut, and where in
    each text its tokens lie."""
    return _encode(bundle.tokenizer, bundle.vocab, bundle.max_length, texts)


def _encode(
    tokenizer: ReportTokenizer, vocab: Vocabulary, max_length: int, texts: Sequence[str]
) -> Encoding:
    ids, cut, spans = [], [], []
    for sents, where in tokenizer.pipe_spans(texts):
        x = vocab.encode([t for s in sents for t in s])
        cut.append(len(x) > max_length)
        ids.append(x[:max_length] or [UNK])
        spans.append(np.array(where[:max_length] or [(0, 0)], dtype=np.int64).reshape(-1, 2))
    return Encoding(ids, np.array(cut, dtype=bool), spans)


_WORKER: tuple[ReportTokenizer, Vocabulary, int] | None = None


def _die_with(parent: int) -> None:
    """End this worker when the process that started it ends, however it ends: a scheduler
    that kills a job kills its main process, and an orphaned worker would hold on to what it
    inherited (the output's lock, a database session) for as long as it lived. Linux: the
    kernel's parent-death signal; elsewhere a thread that watches the parent id."""
    if sys.platform == "linux":
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the signal was asked for
            os._exit(1)
        return
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _start_worker(folder: str, parent: int) -> None:
    global _WORKER
    _die_with(parent)
    f = Path(folder)
    cfg = json.loads((f / "network.json").read_text())
    vocab = Vocabulary((f / "vocab.txt").read_text().splitlines()[2:])
    _WORKER = (ReportTokenizer.load(f / "tokenizer"), vocab, int(cfg["max_length"]))


def _encode_in_worker(texts: list[str]) -> Encoding:
    assert _WORKER is not None
    return _encode(*_WORKER, texts)


class ChunkEncoder:
    """Encodes chunks of reports ahead of the scorer, in ``workers`` processes.

    The tokenizer (scispacy, its abbreviation detector, phrase merging) is a
    pure-Python stage that holds the GIL; in its own processes it runs while the
    CNN scores the previous chunk. ``submit`` returns a future per chunk, and the
    caller takes them in order, so output order is the input's. ``workers=0``
    encodes in the calling process when the result is asked for (no processes).
    Each worker loads the tokenizer and the vocabulary from the bundle's folder, and dies
    with the process that started it (:func:`_die_with`).
    """

    def __init__(self, bundle: Bundle, workers: int = 0):
        self.bundle = bundle
        self.workers = max(0, int(workers))
        self._pool: ProcessPoolExecutor | None = None
        if self.workers:
            method = "fork" if sys.platform == "linux" else "spawn"
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context(method),
                initializer=_start_worker, initargs=(str(bundle.folder), os.getpid()),
            )  # fmt: skip

    def submit(self, texts: list[str]) -> Future:
        if self._pool is not None:
            return self._pool.submit(_encode_in_worker, texts)
        done: Future = Future()
        done.set_result(encode(self.bundle, texts))
        return done

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> ChunkEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# evidence: spans per emitted code
EVIDENCE_SPANS = 3
LONGEST_SPAN = 12  # tokens: overlapping windows merge into one span up to this length

# per task, per report: the emitted code's [(first token, end token, weight), ...]
TokenEvidence = dict[str, list[list[tuple[int, int, float]]]]


@dataclass(frozen=True)
class Scores:
    probs: dict[str, np.ndarray]  # per task [N, C], the mean over the members
    similarity: np.ndarray | None  # to the training sites (None without centroids)
    evidence: TokenEvidence | None = None  # when asked for
    vectors: np.ndarray | None = None  # [N, F] document vectors, the members' mean (when asked)


def score_ids(
    bundle: Bundle, ids: list[list[int]], batch_size: int = 32, pad_to: int | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Class probabilities per task and the similarity to the training sites (None without
    centroids), each the mean over the bundle's members; ``pad_to`` pads every batch to a
    fixed width instead. A bf16 bundle scores each batch in bf16, then again in fp32 the
    reports with a close call (:func:`close_calls`), and keeps the fp32 figures for those."""
    s = score(bundle, ids, batch_size, pad_to)
    return s.probs, s.similarity


@torch.inference_mode()
def score(
    bundle: Bundle,
    ids: list[list[int]],
    batch_size: int = 32,
    pad_to: int | None = None,
    evidence: bool = False,
    vectors: bool = False,
) -> Scores:
    """:func:`score_ids`, and with ``evidence`` the windows of each report that most support
    the code each task emits (the bundle's decoder decodes each batch;
    :func:`kinpath.phenotyping.evidence.emitted_classes`), from
    :meth:`~kinpath.phenotyping.network.MTCNN.window_scores` summed over an ensemble's members and
    divided by their number, as at most :data:`EVIDENCE_SPANS` token spans. ``vectors``: also
    the document vectors (the members' mean), for drift checks."""
    order = np.argsort([len(x) for x in ids], kind="stable")
    out = {t: np.zeros((len(ids), len(bundle.label_maps[t])), np.float32) for t in bundle.tasks}
    sim = np.zeros(len(ids)) if bundle.centroids is not None else None
    found: TokenEvidence | None = {t: [[] for _ in ids] for t in bundle.tasks} if evidence else None
    docs = np.zeros((len(ids), bundle.nets[0].feature_dim), np.float32) if vectors else None
    bf16 = bundle.precision == "bf16"
    for s in range(0, len(ids), batch_size):
        idx = order[s : s + batch_size]
        width = pad_to or max(MIN_TOKENS, max(len(ids[i]) for i in idx))
        tokens = torch.full((len(idx), width), PAD, dtype=torch.long)
        for r, i in enumerate(idx):
            tokens[r, : len(ids[i])] = torch.tensor(ids[i], dtype=torch.long)
        lengths = torch.tensor([len(ids[i]) for i in idx]).to(bundle.device)
        tokens = tokens.to(bundle.device)
        probs, near, ev, z = _score_batch(bundle, tokens, lengths, bf16, evidence)
        if bf16:
            close = close_calls(probs, BF16_RECHECK)
            if close.any():
                rows = torch.from_numpy(np.flatnonzero(close)).to(bundle.device)
                exact, exact_near, exact_ev, exact_z = _score_batch(
                    bundle, tokens[rows], lengths[rows], False, evidence
                )
                for t in bundle.tasks:
                    probs[t][close] = exact[t]
                    if ev is not None and exact_ev is not None:
                        for j, r in enumerate(np.flatnonzero(close)):
                            ev[t][r] = exact_ev[t][j]
                if near is not None and exact_near is not None:
                    near[close] = exact_near
                z[close] = exact_z
        for t in bundle.tasks:
            out[t][idx] = probs[t]
            if found is not None and ev is not None:
                for r, i in enumerate(idx):
                    found[t][i] = ev[t][r]
        if sim is not None and near is not None:
            sim[idx] = near
        if docs is not None:
            docs[idx] = z
    return Scores(out, sim, found, docs)


def _score_batch(
    bundle: Bundle, tokens: torch.Tensor, lengths: torch.Tensor, bf16: bool, evidence: bool
) -> tuple[dict[str, np.ndarray], np.ndarray | None, TokenEvidence | None, np.ndarray]:
    """One padded batch's probabilities, similarity and document vectors, averaged over the
    members, and the evidence of its emitted codes when asked for."""
    k = len(bundle.nets)
    probs: dict[str, np.ndarray] = {}
    sim = None
    z: np.ndarray = np.zeros((len(tokens), bundle.nets[0].feature_dim), np.float32)
    encoded = []
    with torch.autocast(bundle.device.type, dtype=torch.bfloat16, enabled=bf16):
        for m, net in enumerate(bundle.nets):
            enc = net.encode(tokens, lengths, windows=evidence)
            logits = net.classify(enc)
            for t in bundle.tasks:
                p = torch.softmax(logits[t].float(), -1).cpu().numpy() / k
                probs[t] = p if m == 0 else probs[t] + p
            z_m = enc.z.float().cpu().numpy()
            z = z + z_m / k
            if bundle.centroids is not None:
                s_m = similarity(z_m, bundle.centroids[m]) / k
                sim = s_m if sim is None else sim + s_m
            if evidence:
                encoded.append(enc)
    if not evidence:
        return probs, sim, None, z
    ev: TokenEvidence = {}
    n_tokens = lengths.cpu().numpy()
    d = decode(probs, bundle.decoder, sim)
    for t in bundle.tasks:
        up = bundle.decoder.hierarchy.backoff.get(t)
        emitted = emitted_classes(d.labels[t], bundle.label_maps[t], probs[t], up)
        classes = torch.from_numpy(emitted.clip(min=0)[:, None]).to(tokens.device)
        windows: list[tuple[int, np.ndarray]] = []  # (width, [B, 1, W]) over the members
        for net, enc in zip(bundle.nets, encoded, strict=True):
            windows += [(w, sc.cpu().numpy() / k) for w, sc in net.window_scores(enc, t, classes)]
        ev[t] = [
            spans_of([(w, sc[r, 0]) for w, sc in windows], int(n_tokens[r])) if c >= 0 else []
            for r, c in enumerate(emitted)
        ]
    return probs, sim, ev, z


def spans_of(windows: list[tuple[int, np.ndarray]], length: int) -> list[tuple[int, int, float]]:
    """The best :data:`EVIDENCE_SPANS` token spans ``(first, end, weight)`` of one report and
    class, from its windows' scores (``(width, scores by start)``, one entry per width and
    member): the best windows in turn, each merged into a span it overlaps (its weight
    added) while that span stays within :data:`LONGEST_SPAN` tokens, and a span of its own
    otherwise. Windows that do not support the class (score ≤ 0) are no evidence."""
    cands: list[tuple[float, int, int]] = []
    for w, sc in windows:
        if not len(sc):
            continue
        best = np.argsort(-sc, kind="stable")[:16]
        best = best[sc[best] > 0]
        ends = np.minimum(best + w, length)
        cands += zip(sc[best].tolist(), best.tolist(), ends.tolist(), strict=True)
    cands.sort(key=lambda c: (-c[0], c[1], c[2]))
    spans: list[list] = []
    for score_, a, b in cands:
        if a >= b:
            continue
        for sp in spans:
            if a < sp[1] and sp[0] < b:
                if max(b, sp[1]) - min(a, sp[0]) <= LONGEST_SPAN:
                    sp[0], sp[1], sp[2] = min(a, sp[0]), max(b, sp[1]), sp[2] + score_
                break
        else:
            if len(spans) < EVIDENCE_SPANS:
                spans.append([a, b, score_])
    spans.sort(key=lambda sp: -sp[2])
    return [(int(a), int(b), float(w)) for a, b, w in spans]


def close_calls(probs: dict[str, np.ndarray], gap: float) -> np.ndarray:
    """Per report: whether any task's two most probable classes lie within ``gap``, so that
    a small change to the probabilities could change its answer."""
    n = len(next(iter(probs.values())))
    close = np.zeros(n, dtype=bool)
    for p in probs.values():
        if p.shape[1] > 1:
            top2 = np.partition(p, -2, axis=1)[:, -2:]
            close |= top2[:, 1] - top2[:, 0] < gap
    return close
