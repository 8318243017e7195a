"""``kinpath predict`` and ``kinpath registry ...``: the hospital-facing commands.

Thin wrappers: option parsing and printing here, the work in
:mod:`kinpath.pipelines.batch` and :mod:`kinpath.pipelines.registry`.
"""

from __future__ import annotations

import json
from pathlib import Path

from kinpath.phenotyping.precision import Precision
from kinpath.pipelines.notes import NoteSelection


def predict(
    model: str | None = None,
    input: str | None = None,
    output: Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    chunk_size: int = 500,
    batch_size: int = 32,
    id_column: str = "report_id",
    text_column: str = "text",
    tracking_uri: str | None = None,
    notes: NoteSelection = NoteSelection(),
    concepts: bool = False,
    workers: int = 1,
    precision: Precision = "auto",
    device: str = "auto",
) -> None:
    """Score reports with a registered model; one output row per input record, then a JSON summary.

    Args:
        model: Model URI, e.g. models:/kinpath@champion (required).
        input: Reports: .csv, .jsonl, .parquet, or a folder of .txt files; or an OMOP
            warehouse, postgresql://user@host/database (password from PGPASSWORD or
            ~/.pgpass, never in the URI), whose NOTE rows are scored into NOTE_NLP (required).
        output: .parquet or .csv to write (required for files; a warehouse writes NOTE_NLP).
        resume: Finish a killed job from its written chunks.
        overwrite: Replace an existing output.
        chunk_size: Records per atomically written chunk.
        batch_size: Reports per forward pass.
        id_column: The input's id column.
        text_column: The input's text column.
        tracking_uri: MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite:///mlruns.db).
        notes: Warehouse input: which NOTE rows (schema, note_type_concept_id,
            note_class_concept_id, date_from / date_to on note_date, unscored: only notes
            with no NOTE_NLP row from this model version yet).
        concepts: Warehouse input: fill note_nlp_concept_id from its CONCEPT table (ICDO3).
        workers: Processes that tokenize the next chunks while one is scored; 0: none. 1 is
            the fastest on 2 cores (docs/guides/deploy.md, "Speed"); more help where there are more cores.
        precision: auto (int8 convolutions on a CPU for plain heads; for label-knowledge
            heads bf16 on a CPU with bf16 in hardware, with close calls scored again in fp32;
            fp32 elsewhere and on a GPU), fp32, int8, or bf16.
        device: auto (the GPU where torch sees one, else the CPU), cpu, cuda or cuda:N.
    """
    from kinpath.common import InputError

    if model is None or input is None:
        raise InputError("--model and --input are required")
    warehouse = input.startswith(("postgresql://", "postgres://"))
    if warehouse:
        if output is not None:
            raise InputError("a warehouse input writes its NOTE_NLP table: give no --output")
        from kinpath.pipelines.cdm import connect

        # a warehouse that cannot be reached is said before the model is loaded (from a
        # remote registry, minutes), and before torch is imported
        connect(input).close()
    from kinpath.phenotyping.store import existing_store
    from kinpath.pipelines.batch import load_model
    from kinpath.pipelines.batch import predict as run_batch
    from kinpath.pipelines.joblog import log_job

    if warehouse:
        from kinpath.pipelines.omop import score_notes

        summary = score_notes(load_model(model, tracking_uri, precision, device), input, notes,
                              chunk_size, batch_size, concepts, workers)  # fmt: skip
        kind = "warehouse"
    else:
        if output is None:
            raise InputError("--output is required for a file input")
        summary = run_batch(
            load_model(model, tracking_uri, precision, device), Path(input), output, resume=resume,
            overwrite=overwrite, chunk_size=chunk_size, batch_size=batch_size, id_column=id_column,
            text_column=text_column, workers=workers,
        )  # fmt: skip
        kind = "file"
    if model.startswith(("models:/", "runs:/")):  # the job's figures beside the model's
        summary["mlflow_run"] = log_job(summary, existing_store(tracking_uri), kind)
    print(json.dumps(summary, indent=2))


def drift(
    model: str | None = None,
    input: Path | None = None,
    tracking_uri: str | None = None,
    id_column: str = "report_id",
    text_column: str = "text",
    chunk_size: int = 500,
    workers: int = 1,
    precision: Precision = "auto",
    device: str = "auto",
) -> None:
    """Check a batch of reports against what the model was validated on, before scoring them.

    Prints the verdict (ok / warn / stop) and the figures behind it as JSON, and exits 0 for
    ok and warn, 3 for stop, so that a scheduler can hold a nightly job. Nothing is written.

    Args:
        model: Model URI, e.g. models:/kinpath@champion (required).
        input: Reports: .csv, .jsonl, .parquet, or a folder of .txt files (required).
        tracking_uri: MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite:///mlruns.db).
        id_column: The input's id column.
        text_column: The input's text column.
        chunk_size: Reports read and scored at a time.
        workers: Processes that tokenize the next chunks while one is scored; 0: none.
        precision: auto, fp32, int8 or bf16 (as kinpath predict).
        device: auto, cpu, cuda or cuda:N (as kinpath predict).
    """
    from kinpath.common import InputError
    from kinpath.pipelines.batch import check_drift, load_model

    if model is None or input is None:
        raise InputError("--model and --input are required")
    verdict = check_drift(load_model(model, tracking_uri, precision, device), Path(input), id_column,
                          text_column, chunk_size, workers)  # fmt: skip
    print(json.dumps(verdict, indent=2))
    if verdict.get("verdict") == "stop":
        raise SystemExit(3)


def init_schema(uri: str | None = None, schema: str = "public") -> None:
    """Create the OMOP CDM v5.4 NOTE and NOTE_NLP tables (if absent) and kinpath's progress table.

    Args:
        uri: The warehouse, postgresql://user@host/database (password from PGPASSWORD or
            ~/.pgpass); required.
        schema: The CDM schema.
    """
    from kinpath.common import InputError
    from kinpath.pipelines.cdm import init_schema as create

    if uri is None:
        raise InputError("--uri is required")
    print(json.dumps({"created_if_absent": create(uri, schema)}))


def register(run_id: str, name: str = "kinpath", tracking_uri: str | None = None) -> None:
    """Register a training run's model as a new version of NAME.

    Args:
        run_id: The MLflow run of a finished `lightning fit`.
        name: Registered model name.
        tracking_uri: MLflow tracking URI.
    """
    from kinpath.pipelines import registry

    r = registry.register(run_id, name, tracking_uri)
    print(json.dumps(r.__dict__, indent=2))


def promote(
    name: str, version: str, alias: str = "champion", tracking_uri: str | None = None
) -> None:
    """Point an alias (champion) at a model version.

    Args:
        name: Registered model name.
        version: Version to promote.
        alias: Alias to set.
        tracking_uri: MLflow tracking URI.
    """
    from kinpath.pipelines import registry

    registry.promote(name, version, alias, tracking_uri)
    print(
        json.dumps(
            {"name": name, "version": version, "alias": alias, "uri": f"models:/{name}@{alias}"}
        )
    )


def list_(tracking_uri: str | None = None, json: bool = False) -> None:
    """List registered models: a table of name, version, aliases, created, run and headline
    test figures (pooled macro-F1 of site and histology); every tag with --json.

    Args:
        tracking_uri: MLflow tracking URI.
        json: Print every version with all its tags as JSON instead.
    """
    import json as jsonlib

    from kinpath.pipelines import registry

    rows = registry.list_models(tracking_uri)
    print(jsonlib.dumps(rows, indent=2, default=str) if json else versions_table(rows))


HEADLINES = (("site F1", "metric.test/site/macro_f1"),
             ("histology F1", "metric.test/histology/macro_f1"))  # fmt: skip


def versions_table(rows: list[dict]) -> str:
    """The registry as a plain-text table, one line per version."""
    head = ["name", "version", "aliases", "created (UTC)", "run", *(h for h, _ in HEADLINES)]
    body = [
        [str(r["name"]), str(r["version"]), ",".join(r["aliases"]) or "—", str(r["created"]),
         str(r["run_id"] or "—"), *(str(r["tags"].get(k, "—")) for _, k in HEADLINES)]
        for r in rows
    ]  # fmt: skip
    if not body:
        return "no registered models"
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in [head, *body]
    )


def ensemble(
    runs: list[str],
    name: str | None = None,
    alias: str | None = None,
    run_name: str | None = None,
    tracking_uri: str | None = None,
) -> None:
    """Average the class probabilities of fits that differ only in their seed, as one model:
    its decoder is fitted on the ensemble's validation probabilities, its figures logged as a
    new MLflow run with a bundle/ like a fit's. Run it in the folder the fits ran in (their
    configs' data paths are relative to it).

    Args:
        runs: The fits' MLflow run ids (two or more).
        name: Also register the ensemble as a new version of this model.
        alias: Also point this alias (champion) at that version (needs name).
        run_name: The new run's name (default: the members' name with their seeds).
        tracking_uri: MLflow tracking URI.
    """
    from kinpath.common import InputError
    from kinpath.pipelines import registry
    from kinpath.pipelines.ensemble import ensemble as build

    if alias and not name:
        raise InputError("--alias needs --name")
    out = build(runs, tracking_uri, run_name)
    if name:
        r = registry.register(out["run_id"], name, tracking_uri)
        out["registered"] = r.__dict__
        if alias:
            registry.promote(name, r.version, alias, tracking_uri)
            out["registered"]["uri"] = f"models:/{name}@{alias}"
    print(json.dumps(out, indent=2))


def recalibrate(
    model: str | None = None,
    reviewed: Path | None = None,
    name: str | None = None,
    tracking_uri: str | None = None,
) -> None:
    """Register a model recalibrated for a new site: its network, a decoder refitted on
    that site's reviewed reports (temperatures, thresholds, back-off, scope).

    Args:
        model: The base model URI, e.g. models:/kinpath-tcga@champion (required).
        reviewed: The site's reviewed reports in the training format (kinpath review export,
            or any table with report_id, text and label columns); labels must be among the
            model's classes (required).
        name: The registered model to add the version to, e.g. kinpath-tcga-hospitalx
            (required).
        tracking_uri: MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite:///mlruns.db).
    """
    from kinpath.common import InputError
    from kinpath.pipelines import registry

    if model is None or reviewed is None or not name:
        raise InputError("--model, --reviewed and --name are required")
    r = registry.recalibrate(model, Path(reviewed), name, tracking_uri)
    print(json.dumps({"name": r.name, "version": r.version, "run_id": r.run_id,
                      "model_uri": r.model_uri, "base": model}, indent=2))  # fmt: skip


REGISTRY_COMMANDS = {"register": register, "promote": promote, "list": list_, "ensemble": ensemble,
                     "recalibrate": recalibrate}  # fmt: skip
OMOP_COMMANDS = {"init-schema": init_schema}
