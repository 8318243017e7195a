"""Benchmark: end-to-end batch scoring, today's fp32 path against the new one.

Each setting runs ``kinpath.pipelines.batch.predict`` (read the CSV, tokenize, score,
write parquet parts, merge) in its own process, so that peak memory is its own:

* fp32: the path as it was, tokenizing in the scoring process
  (``--workers 0``) and fp32 convolutions;
* new: tokenization in a worker process ahead of the scorer (``--workers 1``,
  the default of ``kinpath predict``) and ``precision auto`` (int8 convolutions for
  plain heads; for label-knowledge heads bf16 where the CPU has it in hardware, with the
  close calls scored again in fp32, else fp32); the JSON says which it was;
* padded: the fp32 path with every batch padded to 3,000 tokens, as the
  published MT-CNN code pads every report (on a tenth of the reports: it is slow);
* with a trained model, also the fp32 path with the default architecture
  (3×300 filters, untrained): the path as it was before the TCGA configs chose
  100 filters a window on validation;
* with ``--postgres``: the new path reading OMOP ``NOTE`` rows from a real
  PostgreSQL server (pgserver) into ``NOTE_NLP`` (``kinpath.pipelines.omop.score_notes``);
* with ``--against MODEL``: a second registered model (the distilled champion against the
  ensemble, ``registry.champion: distilled``) on the new path, its rate beside ``--model``'s
  and, with the TCGA splits, its macro-F1 per task and split beside ``--model``'s.

The model is ``--model`` (default ``models:/kinpath-tcga@champion`` in the
project's store, when it resolves); then both paths also score the TCGA test
splits (../shared) and print their macro-F1 per task and split, which must agree
within 0.01. Without a model: the default MT-CNN architecture (300-d vectors,
3×300 filters) with untrained weights, speed only. Reports are the TCGA texts
cycled to ``--reports`` when ../shared is there, else synthetic reports.

    python bench/batch_throughput.py --reports 10000
    python bench/batch_throughput.py --reports 2000 --postgres
    python bench/batch_throughput.py --reports 2000 --profile   # where a report's time goes
    python bench/batch_throughput.py --model models:/kinpath-tcga/1 --against models:/kinpath-tcga@champion
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from kinpath.phenotyping.precision import PRECISIONS, Precision

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def make_reports(n: int, path: Path) -> str:
    if SHARED.is_dir():
        texts = pd.read_csv(
            SHARED / "tcga-reports" / "reports.csv", dtype=str, keep_default_na=False
        )["text"]
        source = "TCGA texts, cycled"
    else:
        from kinpath.pipelines.synthetic import synthetic_reports

        texts = synthetic_reports(min(n, 2000), seed=1)["text"]
        source = "synthetic reports, cycled"
    df = pd.DataFrame(
        {
            "report_id": [f"R{i:06d}" for i in range(n)],
            "text": [texts.iloc[i % len(texts)] for i in range(n)],
        }
    )
    df.to_csv(path, index=False)
    return source


def make_bundle(reports: Path, folder: Path) -> None:
    """A bundle with the default architecture and a vocabulary from the reports."""
    import json as _json
    from collections import Counter

    import torch

    from kinpath.embeddings.tokenize import ReportTokenizer
    from kinpath.phenotyping.network import MTCNN

    tok = ReportTokenizer()
    texts = pd.read_csv(reports, dtype=str, keep_default_na=False)["text"].head(300)
    counts = Counter(t for s in tok.pipe(texts) for sent in s for t in sent)
    words = [w for w, c in counts.most_common() if c >= 2]
    classes = {
        "site": 30,
        "subsite": 60,
        "laterality": 4,
        "behavior": 2,
        "histology": 50,
        "grade": 7,
    }
    net = MTCNN(len(words) + 2, classes)
    folder.mkdir(parents=True)
    (folder / "network.json").write_text(_json.dumps({
        "vocab_size": len(words) + 2, "num_classes": classes, "embedding_dim": 300, "filters": 300,
        "kernel_sizes": [3, 4, 5], "dropout": 0.5, "tasks": list(classes), "max_length": 3000,
    }))  # fmt: skip
    torch.save(net.state_dict(), folder / "weights.pt")
    (folder / "vocab.txt").write_text("".join(w + "\n" for w in ["<pad>", "<unk>", *words]))
    tok.save(folder / "tokenizer")
    (folder / "label_maps.json").write_text(
        _json.dumps({t: [f"{t}{i}" for i in range(n)] for t, n in classes.items()})
    )
    from kinpath.phenotyping.decode import Decoder

    maps = {t: [f"{t}{i}" for i in range(n)] for t, n in classes.items()}
    decoder = Decoder(maps, thresholds={t: 0.9 for t in classes})
    (folder / "decoder.json").write_text(_json.dumps(decoder.as_dict()))
    (folder / "manifests.json").write_text("{}")


def child(
    bundle: str, reports: str, out: str, pad_to: int | None, n: int | None, workers: int,
    precision: Precision,
) -> None:  # fmt: skip
    from kinpath.phenotyping.bundle import load_bundle
    from kinpath.pipelines.batch import LoadedModel, predict

    src = Path(reports)
    if n:
        src = Path(out).with_suffix(".in.csv")
        pd.read_csv(reports, dtype=str, keep_default_na=False).head(n).to_csv(src, index=False)
    model = LoadedModel("bench", "bench", load_bundle(Path(bundle), precision=precision))
    t = time.perf_counter()
    summary = predict(model, src, Path(out), pad_to=pad_to, chunk_size=1000, batch_size=32,
                      workers=workers)  # fmt: skip
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"reports": summary["records"], "seconds": seconds, "peak_mb": peak,
                      "worker_peak_mb": kids, "precision": model.bundle.precision}))  # fmt: skip


def child_pg(bundle: str, uri: str) -> None:
    from kinpath.phenotyping.bundle import load_bundle
    from kinpath.pipelines.batch import LoadedModel
    from kinpath.pipelines.omop import score_notes

    model = LoadedModel("bench", "bench/1", load_bundle(Path(bundle)))
    t = time.perf_counter()
    summary = score_notes(model, uri, chunk_size=1000, batch_size=32)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"reports": summary["notes_scored_now"], "seconds": seconds, "peak_mb": peak}))


def load_notes(uri: str, reports: Path) -> None:
    import psycopg

    from kinpath.pipelines.cdm import init_schema

    init_schema(uri)
    df = pd.read_csv(reports, dtype=str, keep_default_na=False)
    sql = ("COPY note (note_id, person_id, note_date, note_type_concept_id, note_class_concept_id, "
           "note_text, encoding_concept_id, language_concept_id) FROM STDIN")  # fmt: skip
    with psycopg.connect(uri) as c, c.cursor() as cur, cur.copy(sql) as copy:
        for i, text in enumerate(df["text"], 1):
            copy.write_row((i, i, "2026-11-29", 44814645, 44814639, text, 32678, 4180186))


def profile(bundle: str, reports: str) -> None:
    """Seconds per stage of the batch path over the reports, one stage after another."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from kinpath.kg.reports import read_records
    from kinpath.phenotyping.bundle import load_bundle, score_ids
    from kinpath.phenotyping.decode import decode

    b = load_bundle(Path(bundle))
    t: dict[str, float] = {}

    def clock(name: str, t0: float) -> float:
        now = time.perf_counter()
        t[name] = t.get(name, 0.0) + now - t0
        return now

    t0 = time.perf_counter()
    records = list(read_records(Path(reports)))
    t0 = clock("read", t0)
    texts = [r.text for r in records]
    tokens = [[w for s in sents for w in s] for sents in b.tokenizer.pipe(texts)]
    t0 = clock("tokenize (scispacy + abbreviations)", t0)
    ids = [b.vocab.encode(x)[: b.max_length] or [1] for x in tokens]
    t0 = clock("vocabulary lookup", t0)
    probs, sim = score_ids(b, ids)
    t0 = clock("CNN", t0)
    d = decode(probs, b.decoder, sim)
    t0 = clock("decode", t0)
    table = pa.table({"report_id": [r.report_id for r in records],
                      **{f"{k}_label": list(v) for k, v in d.labels.items()}})  # fmt: skip
    pq.write_table(table, Path(reports).with_suffix(".profile.parquet"))
    clock("write", t0)
    total = sum(t.values())
    n = len(records)
    rows = {k: {"seconds": round(v, 2), "share": round(v / total, 3)} for k, v in t.items()}
    print(json.dumps({"reports": n, "reports_per_s": round(n / total, 1), "stages": rows,
                      "mean_tokens": round(float(np.mean([len(x) for x in ids])), 1)}, indent=2))  # fmt: skip


def run(
    bundle: Path, reports: Path, out: Path, pad_to: int | None, n: int | None, workers: int = 0,
    precision: Precision = "fp32",
) -> dict:  # fmt: skip
    args = [sys.executable, __file__, "--child", str(bundle), str(reports), str(out)]
    args += ["--pad-to", str(pad_to or 0), "--n", str(n or 0), "--workers", str(workers)]
    args += ["--precision", precision]
    r = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def trained_bundle(uri: str, folder: Path) -> bool:
    """Copy a registered model's bundle to ``folder``; False when the URI does not resolve."""
    import shutil

    from kinpath.common import InputError
    from kinpath.pipelines.batch import load_model

    try:
        model = load_model(uri, precision="fp32")
    except (InputError, OSError) as e:
        print(f"no trained model ({uri}: {e}); untrained default architecture, speed only")
        return False
    shutil.copytree(model.bundle.folder, folder)
    print(f"model {uri} ({model.version})")
    return True


def accuracy(bundle: Path, precision: Precision) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Macro-F1 of the heads' answers per task on each TCGA test split (labels as trained),
    and per split and task what the decoder makes of them (the code, or "" where it
    abstains; a backed-off code is marked)."""
    from sklearn.metrics import f1_score

    from kinpath.kg.reports import read_reports
    from kinpath.phenotyping.bundle import encode, load_bundle, score_ids
    from kinpath.phenotyping.data import laterality_by_rule
    from kinpath.phenotyping.decode import decode

    b = load_bundle(bundle, precision=precision)
    out, codes = {}, {}
    for name in ("tcga-reports", "tcga-ocr"):
        table = pd.concat(read_reports(SHARED / name / "reports.csv", where={"split": "test"}))
        table = laterality_by_rule(table.fillna(""))
        ids = encode(b, table["text"].tolist()).ids
        probs, sim = score_ids(b, ids)
        decoded = decode(probs, b.decoder, sim)
        for t in b.tasks:
            has = (table[t] != "").to_numpy()
            pred = pd.Series(b.label_maps[t]).to_numpy()[probs[t].argmax(1)]
            truth = table[t].to_numpy()
            out[f"{name}/{t}"] = round(float(f1_score(truth[has], pred[has], average="macro",
                                                      zero_division=0)), 4)  # fmt: skip
            label = np.where(decoded.abstain[t], "", decoded.labels[t].astype(str))
            codes[f"{name}/{t}"] = np.char.add(label, np.where(decoded.backoff[t], "^", ""))
    return out, codes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", type=int, default=10_000)
    ap.add_argument("--baseline-reports", type=int, default=0, help="default: a tenth of --reports")
    ap.add_argument("--model", default="models:/kinpath-tcga@champion")
    ap.add_argument("--tracking-uri", default=None)
    ap.add_argument("--workers", type=int, default=1, help="the new path's tokenizer processes")
    ap.add_argument("--child", nargs=3)
    ap.add_argument("--pad-to", type=int, default=0)
    ap.add_argument("--n", type=int, default=0)
    ap.add_argument("--precision", default="fp32", choices=PRECISIONS)
    ap.add_argument(
        "--postgres", action="store_true", help="also score from a PostgreSQL NOTE table"
    )
    ap.add_argument("--child-pg", nargs=2)
    ap.add_argument("--profile", action="store_true", help="time each stage instead")
    ap.add_argument("--against", default=None,
                    help="a second model scored on the new path in the same run (the distilled "
                         "champion): its rate and macro-F1 beside --model's")  # fmt: skip
    a = ap.parse_args()
    if a.child:
        bundle, reports, out = a.child
        child(bundle, reports, out, pad_to=a.pad_to or None, n=a.n or None, workers=a.workers,
              precision=a.precision)  # fmt: skip
        return
    if a.child_pg:
        child_pg(*a.child_pg)
        return
    import os

    import torch

    if a.tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = a.tracking_uri
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        source = make_reports(a.reports, d / "reports.csv")
        trained = trained_bundle(a.model, d / "bundle")
        if not trained:
            make_bundle(d / "reports.csv", d / "bundle")
        if a.against and not (trained and trained_bundle(a.against, d / "against")):
            raise SystemExit(
                f"--against needs --model and --against to resolve ({a.model}, {a.against})"
            )
        if a.profile:
            print(f"{a.reports:,} reports ({source})")
            profile(str(d / "bundle"), str(d / "reports.csv"))
            return
        nb = a.baseline_reports or max(1, a.reports // 10)
        print(f"{a.reports:,} reports ({source}); padded baseline on {nb:,}; torch threads "
              f"{torch.get_num_threads()}; CPU {torch.backends.cpu.get_cpu_capability()}")  # fmt: skip
        old = run(d / "bundle", d / "reports.csv", d / "old.parquet", None, None, 0, "fp32")
        new = run(d / "bundle", d / "reports.csv", d / "new.parquet", None, None, a.workers, "auto")
        base = run(d / "bundle", d / "reports.csv", d / "base.parquet", 3000, nb, 0, "fp32")
        default = None
        if trained:  # the path as the issue measured it: the default 3 x 300 filters, fp32
            make_bundle(d / "reports.csv", d / "default")
            default = run(d / "default", d / "reports.csv", d / "default.parquet", None, None, 0,
                          "fp32")  # fmt: skip
        against = None
        if a.against:
            against = run(d / "against", d / "reports.csv", d / "against.parquet", None, None,
                          a.workers, "auto")  # fmt: skip
        pg = None
        if a.postgres:
            import pgserver

            server = pgserver.get_server(d / "pg", cleanup_mode="stop")
            try:
                load_notes(server.get_uri(), d / "reports.csv")
                args = [sys.executable, __file__, "--child-pg", str(d / "bundle"), server.get_uri()]
                r = subprocess.run(args, capture_output=True, text=True, check=True)
                pg = json.loads(r.stdout.strip().splitlines()[-1])
            finally:
                server.cleanup()
        parity, f_against = None, None
        if trained and SHARED.is_dir():
            (f32, f32_codes), (f_new, new_codes) = (accuracy(d / "bundle", p)
                                                    for p in ("fp32", "auto"))  # fmt: skip
            parity = {k: {"fp32": f32[k], "new": f_new[k], "difference": round(f_new[k] - f32[k], 4)}
                      for k in f32}  # fmt: skip
            differ = sum(int((f32_codes[k] != new_codes[k]).sum()) for k in f32_codes)
            cells = sum(len(v) for v in f32_codes.values())
            f_against = accuracy(d / "against", "auto")[0] if against is not None else None
    rate = {k: v["reports"] / v["seconds"] for k, v in (("old", old), ("new", new), ("base", base))}
    if pg is not None:
        pg_rate = pg["reports"] / pg["seconds"]
        print(json.dumps({"postgres_reports": pg["reports"], "postgres_reports_per_s": round(pg_rate, 1),
                          "postgres_peak_mb": round(pg["peak_mb"]),
                          "postgres_vs_file": round(pg_rate / rate["new"], 3)}, indent=2))  # fmt: skip
    print(json.dumps({
        "fp32_reports": old["reports"], "fp32_reports_per_s": round(rate["old"], 1),
        "fp32_peak_mb": round(old["peak_mb"]),
        "new_reports": new["reports"], "new_reports_per_s": round(rate["new"], 1),
        "new_peak_mb": round(new["peak_mb"]), "new_worker_peak_mb": round(new["worker_peak_mb"]),
        "new_workers": a.workers, "new_precision": new["precision"],
        "speedup_vs_fp32": round(rate["new"] / rate["old"], 2),
        "padded_3000_reports": base["reports"], "padded_3000_reports_per_s": round(rate["base"], 1),
        "speedup_fp32_vs_padded": round(rate["old"] / rate["base"], 2),
    }, indent=2))  # fmt: skip
    if default is not None:
        default_rate = default["reports"] / default["seconds"]
        print(json.dumps({
            "default_architecture_fp32_reports_per_s": round(default_rate, 1),
            "default_architecture_fp32_peak_mb": round(default["peak_mb"]),
            "speedup_vs_default_architecture_fp32": round(rate["new"] / default_rate, 2),
        }, indent=2))  # fmt: skip
    if against is not None:
        against_rate = against["reports"] / against["seconds"]
        side: dict = {"model": a.model, "model_reports_per_s": round(rate["new"], 1),
                      "against": a.against, "against_reports_per_s": round(against_rate, 1),
                      "against_precision": against["precision"],
                      "against_peak_mb": round(against["peak_mb"]),
                      "against_vs_model": round(against_rate / rate["new"], 2)}  # fmt: skip
        if f_against is not None:  # the new path's figures of both, test splits
            side["macro_f1"] = {k: {"model": f_new[k], "against": f_against[k],
                                    "difference": round(f_against[k] - f_new[k], 4)}
                                for k in f_new}  # fmt: skip
            lowest = min(v["difference"] for v in side["macro_f1"].values())
            side |= {"lowest_difference": lowest, "within_0.02_below": lowest >= -0.02}
        print(json.dumps(side, indent=2))
    if parity is not None:
        worst = max(abs(v["difference"]) for v in parity.values())
        print(json.dumps({"macro_f1_test_splits": parity, "largest_difference": worst,
                          "within_0.01": worst <= 0.01,
                          "decoded_cells_differing": differ, "decoded_cells": cells}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
