"""The reports DataModule: table → token ids and masked labels, length-bucketed batches.

The table (csv, parquet, jsonl or a folder of .txt files; see
:mod:`kinpath.kg.reports`), or several read as one with their splits kept, has an id
column, a text column and one column per task; the ``split`` column (train /
val / test) fixes the split, or ``split_ratio`` draws one with the seed.
Reports are tokenized with the tokenizer saved beside the embeddings (or a
plain one without phrases when no embeddings are given), and the vocabulary
is the embeddings' (or, without them, the train split's words seen
``min_count`` times), less the words that fewer than ``min_patients``
training patients use and that are no graph term. Token 0 pads, token 1 is
out-of-vocabulary.

Batches are padded only to the longest report in the batch (at most
``max_length`` tokens; longer reports are truncated and counted): training
batches are drawn from buckets of reports of similar length, then shuffled, so
little compute goes to padding. Everything the model needs from the data
(vocabulary size, classes per task, initial vectors, class weights) is
computed in ``__init__`` so that LightningCLI can link it into the model.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from gensim.models import KeyedVectors
from torch.utils.data import DataLoader, Dataset, Sampler

from kinpath.common import InputError
from kinpath.embeddings.store import load_embeddings
from kinpath.embeddings.tokenize import ReportTokenizer
from kinpath.kg.graph import KnowledgeGraph, file_sha256, load_graph
from kinpath.kg.normalize import PHRASE_JOINER
from kinpath.kg.reports import SOURCE, read_reports, table_paths
from kinpath.phenotyping.hierarchy import Hierarchy, hierarchy_from_graph
from kinpath.phenotyping.labels import KNOWLEDGE_TASKS, code_terms, nearby_codes
from kinpath.phenotyping.rules import NOT_APPLICABLE, laterality_applies, read_valid_combinations
from kinpath.phenotyping.tasks import DEFAULT_TASKS, MISSING, LabelEncoder, fit_encoders
from kinpath.phenotyping.vocab import PAD, UNK, Vocabulary, collate

log = logging.getLogger(__name__)


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar length: sort within shuffled buckets, then shuffle the batches."""

    def __init__(
        self, lengths: Sequence[int], batch_size: int, seed: int, bucket_batches: int = 20
    ):
        self.lengths, self.batch_size, self.seed = list(lengths), batch_size, seed
        self.bucket = batch_size * bucket_batches
        self.epoch = 0

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng(self.seed + self.epoch)
        self.epoch += 1
        order = rng.permutation(len(self.lengths))
        batches = []
        for s in range(0, len(order), self.bucket):
            chunk = sorted(order[s : s + self.bucket], key=lambda i: self.lengths[i])
            batches += [
                chunk[b : b + self.batch_size] for b in range(0, len(chunk), self.batch_size)
            ]
        rng.shuffle(batches)
        yield from ([int(i) for i in b] for b in batches)

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)


def _load_vectors(path: Path) -> tuple[KeyedVectors, ReportTokenizer, dict]:
    """Vectors, tokenizer and manifest from an embeddings folder or a word2vec-format file."""
    if path.is_dir():
        emb = load_embeddings(path)
        return emb.vectors, emb.tokenizer, emb.manifest
    if not path.exists():
        raise InputError("no such embeddings folder or vectors file", path=path)
    try:
        kv = KeyedVectors.load_word2vec_format(str(path), binary=path.suffix == ".bin")
    except (ValueError, UnicodeDecodeError, EOFError) as e:
        raise InputError(
            f"not a word2vec-format vectors file ({type(e).__name__})", path=path
        ) from None
    manifest = {
        "method": "external",
        "path": str(path),
        "sha256": file_sha256(path),
        "vocabulary_size": len(kv),
    }
    return kv, ReportTokenizer(), manifest


class ReportDataModule(pl.LightningDataModule):
    def __init__(
        self,
        data: str | list[str],
        embeddings: str | None = None,
        tasks: list[str] = list(DEFAULT_TASKS),  # noqa: B006 (jsonargparse reads the default)
        id_column: str = "report_id",
        text_column: str = "text",
        split_column: str = "split",
        split_ratio: tuple[float, float, float] = (0.7, 0.15, 0.15),
        max_length: int = 1500,
        batch_size: int = 16,
        min_count: int = 2,
        min_patients: int = 5,
        patient_column: str = "patient_id",
        balance_classes: bool = False,
        laterality_not_applicable: bool = True,
        graph: str | None = None,
        graph_codes: bool = False,
        valid_combinations: str | None = None,
        center_vectors: bool = True,
        predict_split: str = "test",
        num_workers: int = 0,
        seed: int = 42,
    ):
        """Reports, tokens and labels for the multitask CNN.

        Args:
            data: Report table (csv, parquet, jsonl, or a folder of .txt files), or a list of
                tables read as one: each keeps its own split, and test results are also
                reported per table (``test/<table>/<task>/...``).
            embeddings: Embeddings folder from `kinpath embed train` (tokenizer, vocabulary,
                vectors), or a word2vec-format file (.txt, or .bin for binary) of vectors made
                elsewhere, read with a plain tokenizer; without either, a plain tokenizer and
                the train split's vocabulary.
            tasks: Task columns; an empty cell is a missing label.
            id_column: Report id column.
            text_column: Report text column.
            split_column: Column with train / val / test; if the table lacks it, split_ratio.
            split_ratio: Train / val / test shares when the table has no split column.
            max_length: Longest report in tokens; longer ones are truncated (and counted).
            batch_size: Reports per batch.
            min_count: Without embeddings: least train-split count of a vocabulary word.
            min_patients: Least number of distinct training patients whose reports use a word
                for it to enter the model's vocabulary (graph terms always do); the rest read
                as unknown, so a patient's name in a few reports never ships with a model.
            patient_column: The patient id column (the report id where the table has none).
            balance_classes: Weight each task's loss by inverse class frequency (train split).
            laterality_not_applicable: Label laterality "not applicable" (SEER code 0) for
                reports whose subsite (or site) is not a paired organ
                (phenotyping/tables/laterality_sites.csv), as a registry codes it, instead of
                leaving it empty or keeping a side the clinical data gives for an unpaired
                organ; the head then learns where laterality does not apply.
            graph: Graph folder (`kinpath kg build`) whose ICD-O-3 hierarchy gives the back-off
                codes (C34.1 → C34.9, 8255 → 8140) and whose terms for each code give the
                label-knowledge heads their class vectors (phenotyping.labels); None: no
                back-off, plain heads only.
            graph_codes: Make the site, subsite and histology codes the graph places within
                two parent/child steps of a training code classes too, so that a
                knowledge head can code what training never showed. Follows `model.heads` (on for
                label-knowledge and label-weights) in LightningCLI.
            valid_combinations: CSV of valid site × histology/behavior pairs, header
                `site,histology` (SEER's list, e.g.
                ../shared/data/registry/seer-site-histology-valid.csv); None: no edit check.
            center_vectors: Remove the vectors' mean before use. Small-corpus word2vec vectors
                share a large common direction (docs/guides/train.md gives the TCGA figure);
                removing it (Mu & Viswanath 2018)
                keeps the neighbourhoods and gives the CNN features that differ between words
                from the first step.
            predict_split: The split `predict` runs on.
            num_workers: DataLoader workers.
            seed: Seed of the split draw and the batch order.
        """
        super().__init__()
        self.save_hyperparameters()
        self.tasks = list(tasks)
        where = ", ".join(map(str, table_paths(data)))  # for messages
        frames = list(read_reports(data, id_col=id_column, text_col=text_column))
        if not frames:
            raise InputError("report table is empty", path=where)
        table = pd.concat(frames, ignore_index=True)
        missing = [t for t in self.tasks if t not in table.columns]
        if missing:
            raise InputError(f"no task column(s) {missing}", path=where)
        if split_column not in table.columns:
            rng = np.random.default_rng(seed)
            r = rng.random(len(table))
            a, b, _ = split_ratio
            table[split_column] = np.where(r < a, "train", np.where(r < a + b, "val", "test"))
        if laterality_not_applicable and "laterality" in self.tasks:
            table = laterality_by_rule(table)
        self.table = table
        # per row, the name of the table it came from (None: one table)
        self.source_of: np.ndarray | None = (
            table[SOURCE].to_numpy() if SOURCE in table.columns else None
        )
        self.splits = {
            s: np.flatnonzero(table[split_column].to_numpy() == s) for s in ("train", "val", "test")
        }
        if not len(self.splits["train"]):
            raise InputError(f"no rows with {split_column} = train", path=where)

        self.embedding_manifest: dict | None = None
        kv: KeyedVectors | None = None
        if embeddings:
            kv, self.tokenizer, self.embedding_manifest = _load_vectors(Path(embeddings))
        else:
            self.tokenizer = ReportTokenizer()
        texts = table[text_column].tolist()
        # remembered: the fits of one `kinpath run` read the same tables with the same tokenizer
        tokens = [
            [t for s in sents for t in s] for sents in self.tokenizer.pipe(texts, remember=True)
        ]

        # a word enters the model's vocabulary only if enough patients' reports use it (or it
        # is a graph term): a name repeated in one patient's reports never ships in a model
        train = self.splits["train"]
        patient = table[patient_column] if patient_column in table.columns else table[id_column]
        spread = _patients_per_word(tokens, train, patient.to_numpy())
        graph_words = {w for p in self.tokenizer.phrases for w in (*p, PHRASE_JOINER.join(p))}
        kg = load_graph(Path(graph)) if graph else None
        # the graph's names of each code, tokenized as reports are: the label-knowledge heads'
        # terms, whose words join the vocabulary even when no training report uses them
        self._term_tokens = self._tokenize_terms(kg) if kg is not None else {}
        term_words = {
            w for m in self._term_tokens.values() for ts in m.values() for x in ts for w in x
        }
        graph_words |= term_words

        def shareable(w: str) -> bool:
            return spread.get(w, 0) >= min_patients or w in graph_words

        if kv is not None:
            words = [w for w in kv.index_to_key if shareable(w)]
            known = set(words)
            # graph term words the vectors lack start random, like the special tokens
            self.vocab = Vocabulary(words + sorted(w for w in term_words if w not in known))
            vectors = kv[words].astype(np.float64) if words else np.zeros((0, kv.vector_size))
            if center_vectors and len(vectors):
                vectors = vectors - vectors.mean(axis=0)
            rng = np.random.default_rng(seed)
            scale = float(vectors.std()) if len(vectors) else 0.1
            init = rng.normal(0.0, scale, (len(self.vocab), kv.vector_size))
            init[PAD] = 0.0
            init[2 : 2 + len(words)] = vectors
            self.init_vectors: torch.Tensor | None = torch.tensor(init, dtype=torch.float32)
            self.embedding_dim = int(kv.vector_size)
            self.held_back_words = len(kv.index_to_key) - len(words)
        else:
            counts = Counter(t for i in train for t in tokens[i])
            frequent = [w for w, n in counts.most_common() if n >= min_count]
            kept = [w for w in frequent if shareable(w)]
            known = set(kept)
            self.vocab = Vocabulary(kept + sorted(w for w in term_words if w not in known))
            self.init_vectors = None
            self.embedding_dim = 300
            self.held_back_words = len(frequent) - (len(self.vocab) - 2)
        log.info("vocabulary: %d words; %d held back (used by fewer than %d patients)",
                 len(self.vocab) - 2, self.held_back_words, min_patients)  # fmt: skip
        ids = [self.vocab.encode(t) or [UNK] for t in tokens]
        self.truncated = sum(len(x) > max_length for x in ids)
        self.ids = [x[:max_length] for x in ids]
        if self.truncated:
            log.info("%d reports longer than %d tokens were truncated", self.truncated, max_length)

        train_rows = self.splits["train"]
        self.encoders: dict[str, LabelEncoder] = fit_encoders(
            {t: table[t].iloc[train_rows].tolist() for t in self.tasks}, self.tasks
        )
        self.vocab_size = len(self.vocab)
        labels, self.unseen = self._encode_labels(warn=not (graph and graph_codes))
        self.labels = np.array(labels, dtype=np.int64).T  # [reports, tasks]
        if kg is not None and graph_codes:
            self._add_graph_codes(kg)
        self.num_classes = {t: len(e) for t, e in self.encoders.items()}
        self.class_weights = self._class_weights() if balance_classes else None
        self.train_counts = {
            t: np.bincount(
                (y := self.labels[self.splits["train"], j])[y >= 0], minlength=self.num_classes[t]
            ).tolist()
            for j, t in enumerate(self.tasks)
        }
        self.label_terms = (
            {
                t: [[self.vocab.encode(x) for x in self._term_tokens[t].get(c, [])]
                    for c in self.encoders[t].classes]
                for t in KNOWLEDGE_TASKS if t in self.encoders
            }
            if kg is not None
            else None
        )  # fmt: skip
        self.coding_rules = coding_rules(self.label_maps, kg, valid_combinations)

    def _tokenize_terms(self, kg: KnowledgeGraph) -> dict[str, dict[str, list[list[str]]]]:
        """Per knowledge task, per code, each of the graph's terms for it as report tokens."""
        terms = code_terms(kg)
        flat = [x for t in KNOWLEDGE_TASKS for ts in terms[t].values() for x in ts]
        tokens = iter(
            [[w for s in sents for w in s] for sents in self.tokenizer.pipe(flat, remember=True)]
        )
        return {t: {c: [next(tokens) for _ in ts] for c, ts in terms[t].items()}
                for t in KNOWLEDGE_TASKS}  # fmt: skip

    def _add_graph_codes(self, kg: KnowledgeGraph) -> None:
        """The graph's codes near the training codes as classes of the knowledge tasks
        (phenotyping.labels.nearby_codes); labels re-encoded."""
        for t in KNOWLEDGE_TASKS:
            if t not in self.encoders:
                continue
            old = self.encoders[t]
            near = nearby_codes(kg, set(self._term_tokens[t]), set(old.classes))
            self.encoders[t] = LabelEncoder(t, tuple(sorted(near)))
            log.info("task %s: %d classes, %d of them from the graph alone",
                     t, len(self.encoders[t]), len(self.encoders[t]) - len(old))  # fmt: skip
        labels, self.unseen = self._encode_labels()
        self.labels = np.array(labels, dtype=np.int64).T

    def _encode_labels(
        self, warn: bool = True
    ) -> tuple[list[list[int]], dict[str, dict[str, int]]]:
        """Class ids per task (a row per task) and the labels no class covers, counted."""
        labels, unseen_by_task = [], {}
        for t in self.tasks:
            enc, unseen = self.encoders[t].encode(self.table[t].tolist())
            labels.append(enc)
            if unseen:
                unseen_by_task[t] = dict(unseen)
                if warn:
                    log.warning("task %s: %d report(s) carry labels unseen in training (%d distinct)",
                                t, sum(unseen.values()), len(unseen))  # fmt: skip
        return labels, unseen_by_task

    def codes(self, task: str, rows: np.ndarray) -> np.ndarray:
        """The label strings of ``rows`` for a task ("" = missing), unseen codes included."""
        return self.table[task].fillna("").astype(str).to_numpy()[rows]

    @cached_property
    def train_code_counts(self) -> dict[str, dict[str, int]]:
        """Per task, training reports per code (what makes a code rare)."""
        tr = self.splits["train"]
        return {t: pd.Series(self.codes(t, tr)).value_counts().to_dict() for t in self.tasks}

    def _class_weights(self) -> dict[str, list[float]]:
        out = {}
        y = self.labels[self.splits["train"]]
        for j, t in enumerate(self.tasks):
            counts = np.bincount(y[:, j][y[:, j] >= 0], minlength=self.num_classes[t]).astype(float)
            w = np.where(counts > 0, counts.sum() / (len(counts) * np.maximum(counts, 1)), 0.0)
            out[t] = w.tolist()
        return out

    @property
    def label_maps(self) -> dict[str, list[str]]:
        return {t: list(e.classes) for t, e in self.encoders.items()}

    def summary(self) -> dict[str, object]:
        """Counts only (no text): what MLflow records about the data."""
        return {
            "reports": {s: len(v) for s, v in self.splits.items()},
            "vocab_size": self.vocab_size,
            "vocab_held_back": int(self.held_back_words),
            "truncated_reports": int(self.truncated),
            "num_classes": self.num_classes,
            "missing_labels": {
                t: {s: int((self.labels[v, j] == MISSING).sum()) for s, v in self.splits.items()}
                for j, t in enumerate(self.tasks)
            },
            "unseen_labels": {t: sum(c.values()) for t, c in self.unseen.items()},
        }

    def _items(self, split: str) -> list[tuple[list[int], list[int], int]]:
        return [(self.ids[i], self.labels[i].tolist(), int(i)) for i in self.splits[split]]

    def eval_loader(self, split: str) -> DataLoader:
        """A split's reports in length order, as validation and test read them."""
        return self._loader(split)

    def _loader(self, split: str, train: bool = False) -> DataLoader:
        items = self._items(split)
        hp = self.hparams
        if train:
            sampler = BucketBatchSampler(
                [len(x) for x, _, _ in items], hp["batch_size"], hp["seed"]
            )
            return DataLoader(
                _List(items),
                batch_sampler=sampler,
                collate_fn=collate,
                num_workers=hp["num_workers"],
            )
        order = sorted(range(len(items)), key=lambda i: len(items[i][0]))
        return DataLoader(_List([items[i] for i in order]), batch_size=hp["batch_size"], collate_fn=collate,
                          num_workers=hp["num_workers"])  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.hparams["predict_split"])

    def save_artifacts(self, folder: Path) -> list[Path]:
        """Label maps, the vocabulary and the data summary, for the run and the model."""
        folder.mkdir(parents=True, exist_ok=True)
        files = {
            "label_maps.json": self.label_maps,
            "data_summary.json": self.summary(),
        }
        if self.embedding_manifest is not None:
            files["embedding_manifest.json"] = self.embedding_manifest
        out = []
        for name, obj in files.items():
            (folder / name).write_text(json.dumps(obj, indent=2) + "\n")
            out.append(folder / name)
        return out


def _patients_per_word(
    tokens: list[list[str]], rows: np.ndarray, patient: np.ndarray
) -> dict[str, int]:
    """For each word, the number of distinct patients among ``rows`` whose reports use it."""
    seen: dict[str, set] = {}
    for i in rows:
        for w in set(tokens[i]):
            seen.setdefault(w, set()).add(patient[i])
    return {w: len(p) for w, p in seen.items()}


def coding_rules(
    label_maps: dict[str, list[str]],
    graph: KnowledgeGraph | None,
    valid_combinations: str | None,
) -> dict:
    """What decoding needs from the graph and the registry's tables, as JSON-able data.

    The valid pairs are kept only where they concern the model's classes or their
    back-off codes, a few thousand of SEER's 49,831.
    """
    hierarchy = Hierarchy()
    if graph is not None:
        hierarchy = hierarchy_from_graph(graph, label_maps, graph.checksum)
    valid = None
    if valid_combinations:
        sites = set(label_maps.get("site", [])) | {u[:3] for u in label_maps.get("subsite", [])}
        hist = set(label_maps.get("histology", []))
        hist |= set(hierarchy.backoff.get("histology", {}).values())
        valid = sorted(
            [u, h]
            for u, h in read_valid_combinations(valid_combinations)
            if u[:3] in sites and h.split("/")[0] in hist
        )
    return {"hierarchy": hierarchy.as_dict(), "valid": valid}


def laterality_by_rule(table: pd.DataFrame) -> pd.DataFrame:
    """Laterality = not applicable where the report's subsite (else its site) is unpaired."""
    where = table.get("subsite", pd.Series("", index=table.index)).where(
        lambda s: s != "", table.get("site", pd.Series("", index=table.index))
    )
    unpaired = where.map(lambda c: c != "" and laterality_applies(c) is False)
    if unpaired.any():
        table = table.copy()
        table.loc[unpaired.to_numpy(), "laterality"] = NOT_APPLICABLE
        log.info("laterality: %d report(s) at unpaired sites labelled %r",
                 int(unpaired.sum()), NOT_APPLICABLE)  # fmt: skip
    return table


class _List(Dataset):
    """A list as a map-style Dataset."""

    def __init__(self, items: list[tuple[list[int], list[int], int]]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[list[int], list[int], int]:
        return self.items[i]
