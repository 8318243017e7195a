"""Benchmark: end-to-end batch scoring, length-bucketed vs padded to 3,000 tokens.

Each setting runs ``pipelines.batch.predict`` (read the CSV, tokenize, score,
write parquet parts, merge) in its own process, so that peak memory is its own:

* kinpath: batches sorted by length and padded to the batch's longest report;
* baseline: the same model and code with every batch padded to 3,000 tokens,
  as the published MT-CNN code pads every report;
* with ``--postgres``: the same reports as OMOP ``NOTE`` rows on a real
  PostgreSQL server (pgserver), scored into ``NOTE_NLP`` by
  ``pipelines.omop.score_notes``, against the file path's rate.

The model is the default MT-CNN architecture (300-d vectors, 3×300 filters)
with untrained weights: throughput does not depend on what the weights are.
Reports are the TCGA texts cycled to ``--reports`` when ../shared is there,
else synthetic reports. The padded baseline is slow on a CPU, so by default it
scores a tenth as many reports; rates compare per report.

    python bench/batch_throughput.py --reports 10000
    python bench/batch_throughput.py --reports 2000 --postgres
    python bench/batch_throughput.py --reports 2000 --profile   # where a report's time goes
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

import pandas as pd

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def make_reports(n: int, path: Path) -> str:
    if SHARED.is_dir():
        texts = pd.read_csv(
            SHARED / "tcga-reports" / "reports.csv", dtype=str, keep_default_na=False
        )["text"]
        source = "TCGA texts, cycled"
    else:
        from pipelines.synthetic import synthetic_reports

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

    from embeddings.tokenize import ReportTokenizer
    from phenotyping.network import MTCNN

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
    from phenotyping.decode import Decoder

    maps = {t: [f"{t}{i}" for i in range(n)] for t, n in classes.items()}
    decoder = Decoder(maps, thresholds={t: 0.9 for t in classes})
    (folder / "decoder.json").write_text(_json.dumps(decoder.as_dict()))
    (folder / "manifests.json").write_text("{}")


def child(bundle: str, reports: str, out: str, pad_to: int | None, n: int | None) -> None:
    from phenotyping.bundle import load_bundle
    from pipelines.batch import LoadedModel, predict

    src = Path(reports)
    if n:
        src = Path(out).with_suffix(".in.csv")
        pd.read_csv(reports, dtype=str, keep_default_na=False).head(n).to_csv(src, index=False)
    model = LoadedModel("bench", "bench", load_bundle(Path(bundle)))
    t = time.perf_counter()
    summary = predict(model, src, Path(out), pad_to=pad_to, chunk_size=1000, batch_size=32)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"reports": summary["records"], "seconds": seconds, "peak_mb": peak}))


def child_pg(bundle: str, uri: str) -> None:
    from phenotyping.bundle import load_bundle
    from pipelines.batch import LoadedModel
    from pipelines.omop import score_notes

    model = LoadedModel("bench", "bench/1", load_bundle(Path(bundle)))
    t = time.perf_counter()
    summary = score_notes(model, uri, chunk_size=1000, batch_size=32)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"reports": summary["notes_scored_now"], "seconds": seconds, "peak_mb": peak}))


def load_notes(uri: str, reports: Path) -> None:
    import psycopg

    from pipelines.omop import init_schema

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

    from phenotyping.bundle import load_bundle, score_ids
    from phenotyping.decode import decode
    from pipelines.records import read_records

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


def run(bundle: Path, reports: Path, out: Path, pad_to: int | None, n: int | None) -> dict:
    args = [sys.executable, __file__, "--child", str(bundle), str(reports), str(out)]
    args += ["--pad-to", str(pad_to or 0), "--n", str(n or 0)]
    r = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", type=int, default=10_000)
    ap.add_argument("--baseline-reports", type=int, default=0, help="default: a tenth of --reports")
    ap.add_argument("--child", nargs=3)
    ap.add_argument("--pad-to", type=int, default=0)
    ap.add_argument("--n", type=int, default=0)
    ap.add_argument(
        "--postgres", action="store_true", help="also score from a PostgreSQL NOTE table"
    )
    ap.add_argument("--child-pg", nargs=2)
    ap.add_argument("--profile", action="store_true", help="time each stage instead")
    a = ap.parse_args()
    if a.child:
        child(*a.child, pad_to=a.pad_to or None, n=a.n or None)
        return
    if a.child_pg:
        child_pg(*a.child_pg)
        return
    import torch

    if a.profile:
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            print(f"{a.reports:,} reports ({make_reports(a.reports, d / 'reports.csv')})")
            make_bundle(d / "reports.csv", d / "bundle")
            profile(str(d / "bundle"), str(d / "reports.csv"))
        return
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        source = make_reports(a.reports, d / "reports.csv")
        make_bundle(d / "reports.csv", d / "bundle")
        nb = a.baseline_reports or max(1, a.reports // 10)
        print(
            f"{a.reports:,} reports ({source}); baseline on {nb:,}; torch threads {torch.get_num_threads()}"
        )
        kin = run(d / "bundle", d / "reports.csv", d / "kin.parquet", None, None)
        base = run(d / "bundle", d / "reports.csv", d / "base.parquet", 3000, nb)
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
    kin_rate, base_rate = kin["reports"] / kin["seconds"], base["reports"] / base["seconds"]
    if pg is not None:
        pg_rate = pg["reports"] / pg["seconds"]
        print(json.dumps({"postgres_reports": pg["reports"], "postgres_reports_per_s": round(pg_rate, 1),
                          "postgres_peak_mb": round(pg["peak_mb"]),
                          "postgres_vs_file": round(pg_rate / kin_rate, 3)}, indent=2))  # fmt: skip
    print(json.dumps({
        "kinpath_reports": kin["reports"], "kinpath_reports_per_s": round(kin_rate, 1),
        "kinpath_peak_mb": round(kin["peak_mb"]),
        "padded_3000_reports": base["reports"], "padded_3000_reports_per_s": round(base_rate, 1),
        "padded_3000_peak_mb": round(base["peak_mb"]),
        "speedup_vs_padded": round(kin_rate / base_rate, 2),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
