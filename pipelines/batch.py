"""``kinpath predict``: score a night's reports with a registered model.

The job reads records in input order (:mod:`kinpath.kg.reports`), cuts them into
chunks of ``chunk_size`` records and writes each chunk's rows as its own
parquet part, atomically (a temporary file, fsync, rename), into
``<output>.parts/``. A killed job leaves only whole parts behind; ``--resume``
re-reads the input, skips the chunks whose part exists and scores the rest,
so every record ends up exactly once. The parts are then merged, again
atomically, into the output (parquet or CSV) and removed.

``<output>.parts/job.json`` pins what the parts were made with (the input's
checksum, the resolved model version, the chunk size, the columns), and
``.<output>.job.json`` beside a finished output what it was made with; a
resume with anything else is refused rather than mixing two models' answers
or passing off an old output as the new input's. A job holds an exclusive
lock on its parts folder (a second job on the same output stops with exit 2),
removes the folder if it fails before writing a chunk, and never writes over
its own input. In CSV output a text cell beginning with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return gets a leading ``'`` so that a spreadsheet
shows it rather than running it as a formula; parquet is written as is.

One row per input record: ``record`` (its number in the input), ``report_id``,
``status`` (``ok``, ``truncated``: scored on its first ``max_length`` tokens,
``error``), ``error`` (``kind: detail``), then the model's columns
(:mod:`kinpath.pipelines.model`), empty on error rows. The job ends with a JSON summary;
logs carry record numbers, ids and counts, never text.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from kinpath.common import InputError
from kinpath.kg.reports import Record, read_records, table_sha256
from kinpath.phenotyping.bundle import (
    Bundle,
    ChunkEncoder,
    Encoding,
    load_bundle,
    resolve_device,
)
from kinpath.phenotyping.drift import Accumulator, check
from kinpath.phenotyping.precision import Precision
from kinpath.pipelines.jobfiles import csv_safe, locked, same_job, write_atomic
from kinpath.pipelines.model import output_columns, output_types, predictions, record_rows

log = logging.getLogger(__name__)

DEFAULT_WORKERS = 1  # tokenizer processes; the fastest on 2 cores (bench/batch_throughput.py)


@dataclass(frozen=True)
class LoadedModel:
    uri: str
    version: str  # what the URI resolved to: "NAME/VERSION", or the URI itself
    bundle: Bundle


def load_model(
    uri: str, tracking: str | None = None, precision: Precision = "auto", device: str = "cpu"
) -> LoadedModel:
    """Load a pyfunc model (``models:/NAME@ALIAS``, ``models:/NAME/V``, ``runs:/...``, a path);
    ``precision``: auto (int8 convolutions on a CPU for plain heads, checked bf16 for
    label-knowledge heads on a CPU with bf16 in hardware), fp32, int8 or bf16;
    ``device``: cpu, cuda, cuda:N, or auto (a GPU where torch sees one) (phenotyping.bundle)."""
    import mlflow

    from kinpath.phenotyping.store import existing_store, tracking_uri, using_store

    try:  # before the model is fetched, maybe from a remote registry
        device = str(resolve_device(device))
    except ValueError as e:
        raise InputError(f"--device: {e}") from None

    # a registered model or a run's is read from the store, which must exist; a path is not
    store = (
        existing_store(tracking)
        if uri.startswith(("models:/", "runs:/"))
        else tracking_uri(tracking)
    )
    version = uri
    if uri.startswith("models:/"):
        name_part = uri[len("models:/") :]
        client = mlflow.MlflowClient(tracking_uri=store)
        try:
            if "@" in name_part:
                name, alias = name_part.split("@", 1)
                version = f"{name}/{client.get_model_version_by_alias(name, alias).version}"
            else:
                name, v = name_part.rsplit("/", 1)
                version = f"{name}/{client.get_model_version(name, v).version}"
        except (mlflow.exceptions.MlflowException, ValueError) as e:
            detail = e.message if isinstance(e, mlflow.exceptions.MlflowException) else str(e)
            raise InputError(f"cannot resolve {uri} in the store {store}: {detail}") from None
    # load the version the alias resolved to, not the alias again: it may move in between
    try:
        with using_store(store):  # a models:/ URI is resolved through the global store
            model = mlflow.pyfunc.load_model(
                f"models:/{version}" if uri.startswith("models:/") else uri,
                model_config={"precision": precision},
            )
    except (mlflow.exceptions.MlflowException, OSError) as e:
        detail = e.message if isinstance(e, mlflow.exceptions.MlflowException) else (
            e.strerror or type(e).__name__)  # fmt: skip
        raise InputError(f"cannot load the model {uri} (store {store}): {detail}") from None
    bundle = model.unwrap_python_model().bundle
    if str(bundle.device) != device:  # on a GPU: a model registered before it took a device
        try:
            bundle = load_bundle(bundle.folder, device=device, precision=precision)
        except ValueError as e:  # int8 on a GPU
            raise InputError(f"--precision {precision} --device {device}: {e}") from None
    return LoadedModel(uri, version, bundle)


def _chunks(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    while chunk := list(islice(records, size)):
        yield chunk


def encoded_ahead(
    bundle: Bundle,
    chunks: Iterable[list[Record]],
    workers: int,
    skip: Callable[[int], bool] = lambda k: False,
) -> Iterator[tuple[int, list[Record], Encoding | None]]:
    """Each chunk, in order, with its good records' token ids (None where ``skip(k)``).

    Up to ``workers + 1`` chunks are being tokenized in worker processes while the
    caller scores the current one, so memory stays a few chunks whatever the input's
    size; ``workers=0`` tokenizes each chunk in this process when it is reached."""
    pending: deque[tuple[int, list[Record], Future | None]] = deque()
    numbered = enumerate(chunks)
    with ChunkEncoder(bundle, workers) as encoder:

        def feed() -> None:
            while len(pending) < workers + 1 and (nxt := next(numbered, None)):
                k, chunk = nxt
                texts = [r.text for r in chunk if not r.error]
                pending.append((k, chunk, None if skip(k) else encoder.submit(texts)))

        feed()
        while pending:
            k, chunk, todo = pending.popleft()
            feed()  # the workers start on the next chunks before this one is scored
            yield k, chunk, None if todo is None else todo.result()


def score_records(
    model: LoadedModel,
    chunk: list[Record],
    batch_size: int,
    tasks: list[str],
    encoded: Encoding,
    pad_to: int | None = None,
    drift: Accumulator | None = None,
) -> pd.DataFrame:
    """One output row per record: error rows for bad ones, the model's columns for the rest.
    ``encoded``: the good records' token ids and cut flags (:func:`encoded_ahead`)."""
    # oneDNN caches compiled convolutions per input shape, each with its scratch
    # memory: over 3,000 reports of varying length the cache held ~1 GB more than
    # the job needs (2 GB more over 10,000 warehouse notes), and switching it off
    # cost nothing measurable (bench/batch_throughput.py). Read when the first
    # convolution runs, so here, before any, for files and warehouses alike.
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "0")
    good = [r for r in chunk if not r.error]
    limit = model.bundle.tokenizer.config.max_chars
    scored = None
    if good:
        cut = encoded.cut | np.array([len(r.text) > limit for r in good])
        scored = predictions(
            model.bundle, encoded._replace(cut=cut), [r.report_id for r in good], batch_size,
            pad_to, drift,
        )  # fmt: skip
        scored.index = [r.number for r in good]
    for r in chunk:
        if r.error:
            log.warning("record %d (id %r): %s", r.number, r.report_id, r.error)
    df = record_rows(chunk, scored, tasks)
    df.insert(0, "record", [r.number for r in chunk])
    return df[_columns(tasks)]


def _columns(tasks: list[str]) -> list[str]:
    """The output's columns: the record's number, then the model's (``truncated`` is a status)."""
    return ["record"] + [c for c in output_columns(tasks) if c != "truncated"]


ARROW_TYPES = {"string": pa.string(), "double": pa.float64(), "boolean": pa.bool_()}


def _schema(tasks: list[str]) -> pa.Schema:
    types = output_types(tasks)
    return pa.schema(
        [("record", pa.int64())] + [(c, ARROW_TYPES[types[c]]) for c in _columns(tasks)[1:]]
    )


def predict(
    model: LoadedModel,
    input: Path,
    output: Path,
    resume: bool = False,
    overwrite: bool = False,
    chunk_size: int = 500,
    batch_size: int = 32,
    id_column: str = "report_id",
    text_column: str = "text",
    pad_to: int | None = None,
    workers: int = DEFAULT_WORKERS,
) -> dict[str, object]:
    """Score ``input`` into ``output``; returns the summary.

    ``workers``: processes that tokenize the next chunks while this one scores
    (0: tokenize in this process). ``pad_to`` pads every batch to a fixed width,
    as the published MT-CNN code does (3,000 tokens); only the benchmark uses it,
    as its baseline.
    """
    input, output = Path(input), Path(output)
    if output.suffix.lower() not in (".parquet", ".csv"):
        raise InputError("output must end in .parquet or .csv", path=output)
    if chunk_size < 1 or batch_size < 1:
        raise InputError(
            f"--chunk-size and --batch-size must be at least 1 (got {chunk_size}, {batch_size})"
        )
    if workers < 0:
        raise InputError(f"--workers must be 0 or more (got {workers})")
    if not input.exists():
        raise InputError("no such input file or folder", path=input)
    if output.resolve() == input.resolve():
        raise InputError("output is the input: choose another output path", path=output)
    parts = output.with_name(output.name + ".parts")
    finished = output.with_name(f".{output.name}.job.json")  # a finished job's settings
    tasks = model.bundle.tasks
    job = {
        "input_sha256": table_sha256(input),
        "model": model.version,
        "chunk_size": chunk_size,
        "id_column": id_column,
        "text_column": text_column,
    }
    done = resume and output.exists() and not parts.exists()  # finished before: only summarize
    if parts.exists() and not resume:
        raise InputError(
            f"an unfinished job's parts are in {parts}: pass --resume to finish it, or remove them"
        )
    if output.exists() and not (resume or overwrite):
        raise InputError("output exists: pass --overwrite to replace it", path=output)
    if done:
        if not finished.exists():
            raise InputError("cannot resume: the finished output's settings are not recorded "
                             f"({finished.name}); pass --overwrite to score again", path=output)  # fmt: skip
        same_job(finished, job)
    schema = _schema(tasks)
    drift = Accumulator() if model.bundle.drift is not None else None
    t0 = time.perf_counter()
    scored = skipped = 0
    if not done:
        with locked(parts):
            if (parts / "job.json").exists():
                same_job(parts / "job.json", job)
            (parts / "job.json").write_text(json.dumps(job, indent=2) + "\n")
            bar = tqdm(desc="scoring reports", unit=" reports", disable=None)
            records = read_records(input, id_column, text_column)

            def done_before(k: int) -> bool:
                return (parts / f"part-{k:06d}.parquet").exists()

            ahead = encoded_ahead(model.bundle, _chunks(records, chunk_size), workers, done_before)
            for k, chunk, encoded in ahead:
                if encoded is None:
                    skipped += 1
                else:
                    df = score_records(model, chunk, batch_size, tasks, encoded, pad_to, drift)
                    part = parts / f"part-{k:06d}.parquet"
                    write_atomic(
                        pa.Table.from_pandas(df, schema=schema, preserve_index=False), part
                    )
                    scored += len(chunk)
                    log.info("chunk %d: %d records written", k, len(chunk))
                bar.update(len(chunk))
            bar.close()
            files = sorted(parts.glob("part-*.parquet"))
            table = (
                pa.concat_tables([pq.read_table(f, schema=schema) for f in files])
                if files
                else schema.empty_table()
            )
            tmp = output.with_name(f".{output.name}.tmp")
            if output.suffix.lower() == ".parquet":
                pq.write_table(table, tmp)
            else:
                csv_safe(table.to_pandas()).to_csv(tmp, index=False)
            os.replace(tmp, output)
            finished.write_text(json.dumps(job, indent=2) + "\n")
            shutil.rmtree(parts)
    seconds = time.perf_counter() - t0

    if done:  # summarize what the finished job wrote; otherwise the table is still in hand
        df = (
            pq.read_table(output).to_pandas()
            if output.suffix.lower() == ".parquet"
            else pd.read_csv(output, dtype=str, keep_default_na=False)
        )
    else:
        df = table.to_pandas()
    ok = (df["status"] != "error").to_numpy()

    def rate(col: str) -> float | None:
        flag = df.loc[ok, col].astype(str).str.lower() == "true"
        return round(float(flag.mean()), 4) if ok.any() else None

    kinds = Counter(e.split(":", 1)[0] for e in df.loc[~ok, "error"])
    summary: dict[str, object] = {
        "input": str(input),
        "output": str(output),
        "model": model.uri,
        "model_version": model.version,
        "precision": model.bundle.precision,
        "device": str(model.bundle.device),
        "records": len(df),
        "scored": int(ok.sum()),
        "truncated": int((df["status"] == "truncated").sum()),
        "errors": int((~ok).sum()),
        "errors_by_kind": dict(sorted(kinds.items())),
        "abstention_rate": {t: rate(f"{t}_abstain") for t in tasks},
        "backoff_rate": {t: rate(f"{t}_backoff") for t in tasks},
        "edit_check_rate": (
            round(float((df.loc[ok, "edit_checks"].fillna("") != "").mean()), 4)
            if ok.any()
            else None
        ),
        "out_of_scope_rate": rate("out_of_scope"),
        "chunks_resumed": skipped,
        "records_scored_now": scored,
        "seconds": round(seconds, 2),
        "reports_per_second": round(scored / seconds, 1) if seconds > 0 else None,
        "drift": drift_summary(model.bundle, drift),
    }
    return summary


def drift_summary(bundle: Bundle, drift: Accumulator | None) -> dict[str, object]:
    """The drift check of the reports scored now (phenotyping.drift), as the summary says it."""
    if bundle.drift is None or drift is None:
        return {"verdict": "unknown", "why": "the model carries no drift reference (fitted "
                "before kinpath had drift checks: fit and register it again)"}  # fmt: skip
    if not drift.reports:
        return {"verdict": "unknown", "why": "no report was scored in this run"}
    v = check(bundle.drift, drift)
    if v.verdict != "ok":
        log.warning("drift check: %s (%s above what the validation reports give 99%% of the "
                    "time at %d reports)", v.verdict, ", ".join(v.alarms), v.reports)  # fmt: skip
    return v.as_dict()


def check_drift(
    model: LoadedModel,
    input: Path,
    id_column: str = "report_id",
    text_column: str = "text",
    chunk_size: int = 500,
    workers: int = DEFAULT_WORKERS,
) -> dict[str, object]:
    """The drift check of a whole input (``kinpath drift``): scored, nothing written."""
    if model.bundle.drift is None:
        raise InputError(f"{model.uri} carries no drift reference: it was fitted before kinpath "
                         "had drift checks; fit and register it again")  # fmt: skip
    drift = Accumulator()
    tasks = model.bundle.tasks
    bad = 0
    bar = tqdm(desc="checking reports", unit=" reports", disable=None)
    records = read_records(input, id_column, text_column)
    for _, chunk, encoded in encoded_ahead(model.bundle, _chunks(records, chunk_size), workers):
        assert encoded is not None
        score_records(model, chunk, 32, tasks, encoded, drift=drift)
        bad += sum(1 for r in chunk if r.error)
        bar.update(len(chunk))
    bar.close()
    return {"input": str(input), "model": model.uri, "model_version": model.version,
            "bad_records": bad, **drift_summary(model.bundle, drift)}  # fmt: skip
