"""What a fit spends outside its epochs: reading the tables, and its test's pass over training.

Each fit of ``kinpath run`` builds a data module (reads and tokenizes every report and the
graph's terms) before its first epoch, and its test reads the training split once more for
the training sites' centroids. This measures both, in one process, each against its
baseline measured in the same run:

- the data module built three times: the first tokenizes (the baseline: what every fit paid
  before the tokens were remembered), the second with the same vectors and the third with
  the other method's vectors take the tokens from memory (their ids must be the first's);
- the centroids' pass over the training split with the heads run (the baseline: what every
  test paid before) and without (the document vectors must be the same to the bit).

    python bench/fit_overhead.py      # the TCGA tables and runs/tcga's vectors and graph

needs ``../shared/data`` and the vectors and graph of a ``kinpath run -c configs/tcga.yaml``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from kinpath.phenotyping.cli import cli, nested

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=ROOT / "configs/mtcnn-tcga.yaml")
    ap.add_argument("--work", type=Path, default=ROOT / "runs/tcga", help="a kinpath run's work")
    ap.add_argument("--heads", default="label-knowledge")
    a = ap.parse_args()
    vectors = {m: a.work / "embeddings" / m for m in ("kg-joint", "word2vec")}
    graph = a.work / "graph/graph"
    for p in (*vectors.values(), graph):
        if not p.exists():
            raise SystemExit(f"{p} is missing: run `kinpath run -c configs/tcga.yaml` first")

    timings, modules = [], []
    for what, method in (("first", "kg-joint"), ("again", "kg-joint"), ("other", "word2vec")):
        options = {
            "data.embeddings": str(vectors[method]), "data.graph": str(graph),
            "model.heads": a.heads, "trainer.logger": False, "trainer.enable_progress_bar": False,
        }  # fmt: skip
        t0 = time.perf_counter()
        c = cli(nested(options) | {"config": [str(a.config)]}, run=False, quiet=True)
        timings.append((f"data module, {what} ({method} vectors)", time.perf_counter() - t0))
        modules.append(c)
    same_ids = modules[0].datamodule.ids == modules[1].datamodule.ids
    model, dm = modules[0].model, modules[0].datamodule
    passes = {}
    for heads in (True, False):
        t0 = time.perf_counter()
        z, _, _ = model._features(dm.eval_loader("train"), classify=heads)
        passes[heads] = (time.perf_counter() - t0, z)
    same_z = bool(np.array_equal(passes[True][1], passes[False][1]))

    base = timings[0][1]
    print(f"{len(dm.splits['train'])} training reports, {a.heads} heads, {a.config.name}")
    print("| part | s | ratio |\n|---|---|---|")
    for name, s in timings:
        print(f"| {name} | {s:.1f} | {s / base:.3f} |")
    for heads, label in ((True, "with the heads"), (False, "without the heads")):
        s = passes[heads][0]
        print(f"| training split's centroid pass, {label} | {s:.1f} | {s / passes[True][0]:.3f} |")
    print(f"the same token ids from memory: {same_ids}; the same document vectors: {same_z}")


if __name__ == "__main__":
    main()
