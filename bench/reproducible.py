"""Check: does one ``kinpath run`` config, run twice from scratch, give the same model?

Runs ``kinpath run -c CONFIG [options]`` twice, each in a fresh work folder and a fresh
SQLite tracking store under ``--out``, in its own process with its own ``PYTHONHASHSEED``,
one after the other, then compares what each stage made:

* the vectors: each embeddings folder's checksum (every file, byte for byte);
* every fit: its bundle's checksum (downloaded from each store), best validation loss,
  epochs and test figures;
* the registered champion: its ``provenance.bundle_sha256``;
* the batch predictions of the test split: the parquet file's checksum.

Prints one row per compared item (same / differs, and by how much for figures) and exits 1
if anything differs; ``--docs PAGE`` also writes the table into a documentation page with the
command, date, machine and commit.

    python bench/reproducible.py --out runs/repro -- -c configs/tcga.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kinpath.kg.graph import file_sha256, folder_sha256

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def run_once(out: Path, hash_seed: int, args: list[str]) -> float:
    """One ``kinpath run`` into ``out/work`` with the store ``out/mlruns.db``; its seconds."""
    out.mkdir(parents=True)
    cmd = [sys.executable, "-m", "kinpath", "run", *args, "--work", str(out / "work"),
           "--tracking_uri", f"sqlite:///{out.resolve() / 'mlruns.db'}", "--docs", "null"]  # fmt: skip
    env = os.environ | {"PYTHONHASHSEED": str(hash_seed)}
    t = time.perf_counter()
    with open(out / "run.log", "w") as log:
        done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.exit(f"kinpath run failed (exit {done.returncode}): see {out / 'run.log'}")
    return time.perf_counter() - t


def stages(work: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(work.glob("*/stage.json"))}


def bundle_sha(store: str, run_id: str) -> str:
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        return folder_sha256(Path(MlflowClient(store).download_artifacts(run_id, "bundle", tmp)))


def compare(a: Path, b: Path) -> list[tuple[str, str, str]]:
    """(item, what, same / how it differs) for each thing both runs made."""
    sa, sb = stages(a / "work"), stages(b / "work")
    stores = [f"sqlite:///{x.resolve() / 'mlruns.db'}" for x in (a, b)]
    rows: list[tuple[str, str, str]] = []

    def same(item: str, what: str, x: object, y: object) -> None:
        rows.append((item, what, "same" if x == y else f"differs ({_diff(x, y)})"))

    for method, folder in sa["embeddings"]["output"].items():
        other = Path(sb["embeddings"]["output"][method])
        same(
            f"vectors {method}",
            "folder checksum",
            folder_sha256(Path(folder)),
            folder_sha256(other),
        )
    for name in (n for n in sa if n.startswith(("fit-", "ensemble-"))):
        x, y = sa[name]["output"], sb[name]["output"]
        same(
            name,
            "bundle checksum",
            bundle_sha(stores[0], x["run_id"]),
            bundle_sha(stores[1], y["run_id"]),
        )
        same(name, "best validation loss", x.get("val_loss"), y.get("val_loss"))
        if "epochs" in x:
            same(name, "epochs", x["epochs"], y["epochs"])
        same(name, "test figures", x["metrics"], y["metrics"])
    same("champion", "provenance.bundle_sha256", sa["registry"]["output"].get("bundle_sha256"),
         sb["registry"]["output"].get("bundle_sha256"))  # fmt: skip
    same("test predictions", "parquet checksum", file_sha256(Path(sa["predict"]["output"]["predictions"])),
         file_sha256(Path(sb["predict"]["output"]["predictions"])))  # fmt: skip
    return rows


def _diff(x: object, y: object) -> str:
    if isinstance(x, float) and isinstance(y, float):
        return f"{x:.6g} against {y:.6g}"
    if isinstance(x, dict) and isinstance(y, dict):
        keys = [k for k in sorted(x.keys() | y.keys()) if x.get(k) != y.get(k)]
        gaps = [
            abs(x[k] - y[k])
            for k in keys
            if isinstance(x.get(k), float) and isinstance(y.get(k), float)
        ]
        return f"{len(keys)} of {len(x)} figures, by up to {max(gaps, default=0):.4f}"
    return "checksums differ" if isinstance(x, str) else f"{x} against {y}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out", type=Path, required=True, help="a folder for the two runs (must not exist)"
    )
    ap.add_argument("--docs", type=Path, default=None, help="also write the table into this page")
    ap.add_argument("run_args", nargs=argparse.REMAINDER, help="-- then kinpath run's arguments")
    a = ap.parse_args()
    args = [x for x in a.run_args if x != "--"]
    if a.out.exists():
        sys.exit(f"{a.out} exists: the check runs from scratch into a new folder")
    seconds = [run_once(a.out / name, seed, args) for name, seed in (("first", 1), ("second", 2))]
    rows = compare(a.out / "first", a.out / "second")
    differs = sum(r[2] != "same" for r in rows)
    page = (
        "# Reproducibility check\n\n"
        f"`kinpath run {shlex.join(args)}` twice from scratch (fresh work folders and tracking "
        f"stores, PYTHONHASHSEED 1 and 2), {seconds[0] / 60:.1f} and {seconds[1] / 60:.1f} min; "
        f"{len(rows) - differs} of {len(rows)} items the same.\n\n"
        "| item | compared | result |\n| --- | --- | --- |\n"
        + "".join(f"| {i} | {w} | {r} |\n" for i, w, r in rows)
    )
    print(page)
    if a.docs is not None:
        from kinpath.pipelines.report import publish_page

        print(f"docs: {publish_page(page, a.docs, 'python ' + shlex.join(sys.argv))}")
    sys.exit(1 if differs else 0)


if __name__ == "__main__":
    main()
