"""The results a reviewer reads: one Markdown and one HTML page with the plots.

Both pages are rendered from one list of sections, so they say the same.
Tables: a row per method (initialization × heads, mean ± spread over seeds)
and the TF-IDF baseline, per test split and pooled: micro-/macro-F1 and the
share auto-coded per task, and macro-F1 over the rare codes; the
champion's auto-coding before and after decoding; the embeddings' held-out
recall; the batch job's summary; each stage's time. Plots: macro-F1 by initialization (bars), the
champion's accuracy–coverage curves, the site/histology neighbourhoods before
and after infusion. The page and its plots are also logged to MLflow as a run
of their own (``pipeline-report``). Counts and metrics only: no report text.
"""

from __future__ import annotations

import html
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kinpath.phenotyping.table import method_table


def _f1_plot(results: dict[str, dict[str, float]], tasks: list[str], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(results)
    x = np.arange(len(tasks))
    w = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(1.4 * len(tasks) + 4, 4))
    for i, m in enumerate(methods):
        vals = [results[m].get(f"test/{t}/macro_f1", 0.0) for t in tasks]
        ax.bar(x + i * w - 0.4 + w / 2, vals, w, label=m)
    ax.set_xticks(x, tasks)
    ax.set_ylabel("macro-F1 (test)")
    ax.set_ylim(0, 1)
    ax.legend(
        fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0)
    )  # beside, not over, the bars
    ax.set_title("Macro-F1 per task by method (mean over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@dataclass(frozen=True)
class RunResults:
    """What one ``kinpath run`` made, as the report reads it."""

    results: dict[str, dict[str, float]]  # per method (mean over its seeds) and the baseline
    spreads: dict[str, dict[str, float]]  # the standard deviation over seeds
    embeddings: dict[str, str]  # method -> embeddings folder
    prediction: dict  # the batch stage's output: its summary
    model: dict  # the registry stage's output: uri, version
    champion: str  # the registered method
    champion_fit: dict  # its fit (or ensemble) stage's output
    tracking_uri: str
    seeds: dict[str, list[int]]  # which seeds each method was fitted with
    champion_reason: str = ""  # why the champion is the registered method
    stage_seconds: dict[str, float] = field(default_factory=dict)  # each stage, as made
    # the environments that made the stages (work/environments/<id>.json), each with its stages
    environments: dict[str, dict] = field(default_factory=dict)


def stage_table(seconds: dict[str, float]) -> str:
    """Each stage's time as its stage.json recorded it when it was made, in run order, and
    the total: a stage cached from an earlier run keeps that run's time."""
    rows = ["| stage | time |", "|---|---|"]
    rows += [f"| {name} | {duration(s)} |" for name, s in seconds.items()]
    rows.append(f"| **total** | {duration(sum(seconds.values()))} |")
    return "\n".join(rows)


PACKAGES_SHOWN = ("torch", "numpy", "scipy", "gensim", "scikit-learn", "pytorch-lightning")


def environment_table(environments: dict[str, dict]) -> str:
    """One row per environment that made a stage: which stages, the processor and the kernels
    torch picked on it, the threads and the versions that decide a fit's floating-point sums.
    A rebuild that differs from the published figures reads here whether these did."""
    head = ["environment", "stages", "processor", "torch kernels", "threads (torch / word2vec)",
            "python", *PACKAGES_SHOWN]  # fmt: skip
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    every = sum(len(e["stages"]) for e in environments.values())
    for ident, e in environments.items():
        cpu, threads, packages = e.get("processor", {}), e["threads"], e["packages"]
        rows.append("| " + " | ".join([
            ident, "all" if len(e["stages"]) == every else ", ".join(e["stages"]),
            cpu.get("model", "not recorded"),
            f"{cpu.get('torch_kernels', 'not recorded')} "
            f"({', '.join(cpu['instruction_sets']) if 'instruction_sets' in cpu else '—'})",
            f"{threads['torch']} / {threads['word2vec_workers']}", e["python"],
            *(packages.get(p, "—") for p in PACKAGES_SHOWN),
        ]) + " |")  # fmt: skip
    return "\n".join(rows)


def duration(s: float) -> str:
    """``42.3 s`` under a minute, else whole seconds: ``13 min 05 s`` (839.7 s is ``14 min 00 s``)."""
    if s < 60:
        return f"{s:.1f} s"
    minutes, seconds = divmod(round(s), 60)
    return f"{minutes} min {seconds:02d} s"


def write_report(folder: Path, made: RunResults) -> dict[str, str]:
    """The results pages into ``folder`` and an MLflow run of their own."""
    import mlflow

    results, spreads, embeddings = made.results, made.spreads, made.embeddings
    model, champion, champion_fit, seeds = made.model, made.champion, made.champion_fit, made.seeds
    prediction, champion_reason, tracking_uri = (
        made.prediction,
        made.champion_reason,
        made.tracking_uri,
    )
    tasks = task_names(results)
    plots = [_f1_plot(results, tasks, folder / "f1_by_initialization.png")]
    client = mlflow.MlflowClient(tracking_uri)
    champion_run = champion_fit["run_id"]
    curve = "test/accuracy_coverage.png"
    if curve in {f.path for f in client.list_artifacts(champion_run, "test")}:
        plots.append(Path(client.download_artifacts(champion_run, curve, str(folder))))
    emb_eval = Path(next(iter(embeddings.values()))).parent / "evaluation"
    if (emb_eval / "neighbourhoods.png").exists():
        plots.append(
            Path(shutil.copy(emb_eval / "neighbourhoods.png", folder / "neighbourhoods.png"))
        )
    evaluation = (
        json.loads((emb_eval / "evaluation.json").read_text())
        if (emb_eval / "evaluation.json").exists()
        else []
    )

    summary = prediction["summary"]
    tables = sorted({k.split("/")[1] for r in results.values() for k in r if k.count("/") == 3}
                    - {"before"})  # fmt: skip
    fitted = "; ".join(f"{m}: seeds {', '.join(map(str, s))}" for m, s in seeds.items())
    legend = ("Each cell: micro-F1 / macro-F1 (± standard deviation over seeds, where fitted with "
              "more than one) / share auto-coded after decoding (consistent codes, edit checks, "
              "thresholds with a 95% bound on 97% accuracy chosen on validation). Rare codes: "
              "macro-F1 over the true codes with fewer than 10 training reports, codes no training "
              f"report carries included. Fits: {fitted}.")  # fmt: skip
    sections: list[tuple[str, list[tuple[str, str]]]] = [
        *((f"Test split {name}", [("table", method_table(results, tasks, f"test/{name}", spreads))])
          for name in tables),
        ("All test splits pooled", [
            ("table", method_table(results, tasks, "test", spreads)), ("text", legend),
        ]),
        (f"Auto-coding by the champion ({champion}, {_seeds(champion_fit['seed'])}): before and after decoding", [
            ("table", autocoding_table(champion_fit["metrics"], tasks,
                                       ["test", *(f"test/{n}" for n in tables)])),
            ("text", "before: each task alone, abstaining below the lowest confidence that "
                     "reached 97% on validation; after: phenotyping.decode. Back-off is right when "
                     "the true code lies under the emitted NOS code. Accuracy is — where nothing "
                     f"was coded. Registered: {champion_reason}.{_teacher(model)}"),
            *((("text", not_coded),) if (not_coded := _never_coded(champion_fit["metrics"], tasks)) else ()),
        ]),
        ("Embeddings (held-out KG neighbour recall@10)", [
            ("list", "\n".join(f"{r['method']}: {r['heldout_recall@10']} over "
                                f"{r['heldout_pairs']} held-out pairs" for r in evaluation)),
        ]),
        (f"Batch prediction with {model['uri']} (version {model['version']}, {champion})", [
            ("code", json.dumps(summary, indent=2)),
        ]),
        *((("Stage times", [
            ("table", stage_table(made.stage_seconds)),
            ("text", "Each stage's time when it was made, from its stage.json; a stage this run "
                     "took from the cache keeps the time of the run that made it. The report's "
                     "own stage is not counted."),
        ]),) if made.stage_seconds else ()),
        *((("Environment", [
            ("table", environment_table(made.environments)),
            ("text", "What made the stages (work/environments/), with the versions of the "
                     "libraries whose arithmetic a fit's figures depend on; every installed "
                     "version is in the environment's file. The same code, versions and threads "
                     "give the same bytes on the same processor; on another the figures move."),
        ]),) if made.environments else ()),
        ("Plots", [("image", p.name) for p in plots]),
    ]  # fmt: skip
    (folder / "results.md").write_text(render_markdown("kinpath results", sections))
    (folder / "results.html").write_text(render_html("kinpath results", sections))
    exp = client.get_experiment_by_name("kinpath-pipeline")
    exp_id = exp.experiment_id if exp else client.create_experiment("kinpath-pipeline")
    run = client.create_run(exp_id, run_name="pipeline-report")
    for f in [folder / "results.md", folder / "results.html", *plots]:
        client.log_artifact(run.info.run_id, str(f))
    for name, r in results.items():
        for k, v in r.items():
            client.log_metric(run.info.run_id, f"{name}/{k}", v)
    client.set_terminated(run.info.run_id)
    return {
        "markdown": str(folder / "results.md"),
        "html": str(folder / "results.html"),
        "run_id": run.info.run_id,
    }


def _teacher(model: dict) -> str:
    """The sentence naming the ensemble a distilled champion stands in for, if registered."""
    if not model.get("teacher"):
        return ""
    t = model["teacher"]
    return (f" The ensemble it was distilled from is registered too: {t['uri']} (version "
            f"{t['version']}), for a side-by-side test (`bench/batch_throughput.py --model "
            f"{t['uri']} --against {model['uri']}`).")  # fmt: skip


def publish(report: Path, dest: Path, command: str) -> Path:
    """Write a run's ``results.md`` into a documentation page (:func:`publish_page`), the plots
    copied beside the page."""
    files = dest.parent / dest.stem
    files.mkdir(parents=True, exist_ok=True)
    body = report.read_text()
    for image in sorted(report.parent.glob("*.png")):
        shutil.copy(image, files / image.name)
        body = body.replace(f"]({image.name})", f"]({files.name}/{image.name})")
    return publish_page(body, dest, command)


def publish_page(page: str, dest: Path, command: str) -> Path:
    """Write a markdown page into the documentation under what made it: the command, the
    date, the machine and the commit (the page's own title gives way to the command)."""
    import datetime as dt
    import subprocess

    from kinpath.pipelines.environment import machine

    body = page.split("\n", 1)[1]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=Path(__file__).parent, check=False).stdout.strip()  # fmt: skip
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(
        f"# Results of `{command}`\n\n"
        f"Written by that command on {dt.date.today()}, {machine()}, "
        f"kinpath {commit or 'outside a git checkout'}.\n" + body
    )
    return dest


def _never_coded(metrics: dict[str, float], tasks: list[str]) -> str:
    """Why a task the champion never auto-codes goes to review, in words."""
    never = [
        t for t in tasks if f"test/{t}/coverage" in metrics and not metrics[f"test/{t}/coverage"]
    ]
    if not never:
        return ""
    return (f"Never auto-coded by this model: {', '.join(never)}. No confidence level of its "
            "reached 97% accuracy (with a 95% bound) on the validation split, so every such "
            "field goes to review; more validation reports, or a model that separates those "
            "classes better, can lower the threshold enough to code some.")  # fmt: skip


def _seeds(seed: int | list[int]) -> str:
    return f"seeds {', '.join(map(str, seed))}" if isinstance(seed, list) else f"seed {seed}"


_ORDER = ["site", "subsite", "laterality", "behavior", "histology", "grade"]


def task_names(results: dict[str, dict[str, float]]) -> list[str]:
    """The tasks named in ``test/<task>/...`` metrics, registry order first."""
    names = {k.split("/")[1] for r in results.values() for k in r
             if k.count("/") == 2 and k.endswith("/macro_f1")}  # fmt: skip
    return sorted(names, key=lambda t: (_ORDER.index(t) if t in _ORDER else len(_ORDER), t))


def autocoding_table(metrics: dict[str, float], tasks: list[str], prefixes: list[str]) -> str:
    """Markdown: per split and task, auto-coded share and accuracy before and after decoding,
    and the share backed off to a NOS code with its accuracy."""
    head = ["split", "task", "before: auto-coded", "before: accuracy", "after: auto-coded",
            "after: accuracy", "back-off", "back-off accuracy"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(key: str) -> str:
        v = metrics.get(key)
        return "—" if v is None else f"{v:.3f}"

    def accuracy(share: str, key: str) -> str:
        """An accuracy over nothing coded is no accuracy: "—", not 0.000."""
        return "—" if not metrics.get(share) else cell(key)

    def count(key: str) -> str:
        v = metrics.get(key)
        return "—" if v is None else f"{int(v)} report(s)"

    for prefix in prefixes:
        split = prefix.split("/", 1)[1] if "/" in prefix else "pooled"
        for t in tasks:
            if f"{prefix}/{t}/coverage" not in metrics:
                continue
            b, a = f"{prefix}/before/{t}", f"{prefix}/{t}"
            cells = [split, t, cell(f"{b}/coverage"),
                     accuracy(f"{b}/coverage", f"{b}/covered_accuracy"), cell(f"{a}/coverage"),
                     accuracy(f"{a}/coverage", f"{a}/covered_accuracy"), cell(f"{a}/backoff"),
                     accuracy(f"{a}/backoff", f"{a}/backoff_accuracy")]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        # contradictions are a count of reports; edit checks and out-of-scope are shares
        checks = [f"{k}: before {fmt(f'{prefix}/before/{k}')}, after {fmt(f'{prefix}/{k}')}"
                  for k, fmt in (("contradictions", count), ("edit_checks", cell),
                                 ("out_of_scope", cell))]  # fmt: skip
        cells = [split, "records", *checks]
        lines.append("| " + " | ".join(cells + [""] * (len(head) - len(cells))) + " |")
    return "\n".join(lines) + "\n"


def render_markdown(title: str, sections: list[tuple[str, list[tuple[str, str]]]]) -> str:
    out = [f"# {title}", ""]
    for heading, parts in sections:
        out += [f"## {heading}", ""]
        for kind, body in parts:
            if kind == "code":
                out += ["```json", body, "```"]
            elif kind == "list":
                out += [f"- {line}" for line in body.splitlines()]
            elif kind == "image":
                out.append(f"![{Path(body).stem}]({body})")
            else:
                out.append(body)
            out.append("")
    return "\n".join(out)


def render_html(title: str, sections: list[tuple[str, list[tuple[str, str]]]]) -> str:
    """The same sections as :func:`render_markdown`, as one valid HTML5 document."""
    e = html.escape
    body = [f"<h1>{e(title)}</h1>"]
    for heading, parts in sections:
        body.append(f"<h2>{e(heading)}</h2>")
        for kind, text in parts:
            if kind == "table":
                body.append(_md_table_html(text))
            elif kind == "code":
                body.append(f"<pre>{e(text)}</pre>")
            elif kind == "list":
                body.append(
                    "<ul>" + "".join(f"<li>{e(x)}</li>" for x in text.splitlines()) + "</ul>"
                )
            elif kind == "image":
                body.append(f"<figure><img src='{e(text)}' alt='{e(Path(text).stem)}' "
                            f"style='max-width:100%'><figcaption>{e(Path(text).stem)}</figcaption></figure>")  # fmt: skip
            else:
                body.append(f"<p>{e(text)}</p>")
    return (
        "<!doctype html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>{e(title)}</title>\n"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}</style>\n"
        "</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def _md_table_html(md: str) -> str:
    rows = [
        r.strip().strip("|").split("|") for r in md.strip().splitlines() if not r.startswith("|---")
    ]
    out = ["<table>"]
    for i, r in enumerate(rows):
        tag = "th" if i == 0 else "td"
        out.append(
            "<tr>" + "".join(f"<{tag}>{html.escape(c.strip())}</{tag}>" for c in r) + "</tr>"
        )
    return "\n".join([*out, "</table>"])
