"""The results a reviewer reads: one Markdown and one HTML page with the plots.

Tables: micro-/macro-F1 per task for each initialization and the TF-IDF
baseline, coverage at the target accuracy; the embeddings' held-out recall;
the batch job's summary. Plots: macro-F1 by initialization (bars), the
champion's accuracy–coverage curves, the site/histology neighbourhoods before
and after infusion. The page and its plots are also logged to MLflow as a run
of their own (``pipeline-report``). Counts and metrics only: no report text.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import numpy as np

from phenotyping.compare import results_table


def _f1_plot(results: dict[str, dict[str, float]], tasks: list[str], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(results)
    x = np.arange(len(tasks))
    w = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(1.4 * len(tasks) + 2, 4))
    for i, m in enumerate(methods):
        vals = [results[m].get(f"test/{t}/macro_f1", 0.0) for t in tasks]
        ax.bar(x + i * w - 0.4 + w / 2, vals, w, label=m)
    ax.set_xticks(x, tasks)
    ax.set_ylabel("macro-F1 (test)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("Macro-F1 per task by initialization")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(
    folder: Path,
    fits: dict[str, dict],
    baseline: dict[str, float],
    embeddings: dict[str, str],
    prediction: dict,
    model: dict,
    champion: str,
    tracking_uri: str,
) -> dict[str, str]:
    import mlflow

    results = {f"mtcnn-{k}": v["metrics"] for k, v in fits.items()}
    results["tfidf-logreg"] = baseline
    tasks = task_names(results)
    plots = [_f1_plot(results, tasks, folder / "f1_by_initialization.png")]
    client = mlflow.MlflowClient(tracking_uri)
    champion_run = fits[champion]["run_id"]
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
    md = [
        "# kinpath results",
        "",
        "## Test metrics per task",
        "",
        results_table(results, tasks),
        "Coverage: share of test reports coded automatically at the threshold chosen on validation "
        "for the target accuracy (97%).",
        "",
        "## Embeddings (held-out KG neighbour recall@10)",
        "",
        *(
            f"- {r['method']}: {r['heldout_recall@10']} over {r['heldout_pairs']} held-out pairs"
            for r in evaluation
        ),
        "",
        f"## Batch prediction with `{model['uri']}` (version {model['version']}, mtcnn-{champion})",
        "",
        "```json",
        json.dumps(summary, indent=2),
        "```",
        "",
        "## Plots",
        "",
        *(f"![{p.stem}]({p.name})" for p in plots),
        "",
    ]
    (folder / "results.md").write_text("\n".join(md))
    page = [
        "<!doctype html><meta charset='utf-8'><title>kinpath results</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}</style>",
        _md_table_html(results_table(results, tasks)),
        "<h2>Batch prediction</h2><pre>" + html.escape(json.dumps(summary, indent=2)) + "</pre>",
        *(
            f"<h3>{html.escape(p.stem)}</h3><img src='{html.escape(p.name)}' style='max-width:100%'>"
            for p in plots
        ),
    ]
    (folder / "results.html").write_text("<h1>kinpath results</h1>\n" + "\n".join(page))
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


_ORDER = ["site", "subsite", "laterality", "behavior", "histology", "grade"]


def task_names(results: dict[str, dict[str, float]]) -> list[str]:
    """The tasks named in ``test/<task>/...`` metrics, registry order first."""
    names = {k.split("/")[1] for r in results.values() for k in r if k.count("/") == 2}
    return sorted(names, key=lambda t: (_ORDER.index(t) if t in _ORDER else len(_ORDER), t))


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
