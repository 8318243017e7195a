"""Benchmark: streaming a large UMLS-layout release into a graph folder.

Generates a synthetic META/ folder (MRCONSO and MRREL, ``--rows`` each, in the
real 18- and 16-field layouts with trailing ``|``), then, each in a fresh
process so that peak memory is its own:

* baseline: read every line and split it on ``|``, nothing else: the least any
  Python RRF reader must do;
* kinpath: ``kinpath.kg.graph.build_graph`` (filter, normalize every string, write
  parquet, derive concepts, keep relations between known concepts).

Prints rows per second and peak resident memory of each, and their ratios.
The target: kinpath's peak memory stays under 1 GB at 2 M + 2 M rows.

    python bench/kg_stream.py --rows 2000000
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = [
    "carcinoma",
    "adenocarcinoma",
    "squamous",
    "cell",
    "ductal",
    "lobular",
    "infiltrating",
    "papillary",
    "serous",
    "clear",
    "renal",
    "lung",
    "breast",
    "colon",
    "rectum",
    "upper",
    "lower",
    "lobe",
    "kidney",
    "thyroid",
    "gland",
    "tissue",
    "neoplasm",
    "malignant",
    "benign",
    "invasive",
    "metastatic",
    "primary",
    "tumor",
    "nos",
    "type",
    "variant",
]


def generate(meta: Path, rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    meta.mkdir(parents=True, exist_ok=True)
    n_cui = max(rows // 4, 1)
    with open(meta / "MRCONSO.RRF", "w", encoding="utf-8") as f:
        for i in range(rows):
            cui = f"C{rng.randrange(n_cui):07d}"
            s = " ".join(rng.choices(WORDS, k=rng.randint(1, 5))).capitalize()
            lat = "ENG" if i % 10 else "SPA"
            f.write(f"{cui}|{lat}|P|L{i}|PF|S{i}|Y|A{i}|||{i}|ICDO3|PT|{i}|{s}|0|N|256|\n")
    with open(meta / "MRREL.RRF", "w", encoding="utf-8") as f:
        for i in range(rows):
            a, b = rng.randrange(n_cui), rng.randrange(n_cui)
            rel, rela = rng.choice((("PAR", "inverse_isa"), ("CHD", "isa"), ("RO", "related_to")))
            f.write(f"C{a:07d}||CUI|{rel}|C{b:07d}||CUI|{rela}|R{i}||ICDO3|ICDO3||Y|N||\n")


def _baseline(meta: str) -> int:
    n = 0
    for name in ("MRCONSO.RRF", "MRREL.RRF"):
        with open(Path(meta) / name, encoding="utf-8") as f:
            for line in f:
                line.rstrip("\n").split("|")
                n += 1
    return n


def _kinpath(meta: str) -> int:
    from kinpath.kg.graph import build_graph

    with tempfile.TemporaryDirectory() as out:
        build_graph(Path(out) / "g", umls_dirs=[Path(meta)])
    return sum(1 for name in ("MRCONSO.RRF", "MRREL.RRF") for _ in open(Path(meta) / name, "rb"))


def _child(which: str, meta: str) -> None:
    t = time.perf_counter()
    rows = {"baseline": _baseline, "kinpath": _kinpath}[which](meta)
    seconds = time.perf_counter() - t
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": rows, "seconds": seconds, "peak_mb": peak_mb}))


def measure(which: str, meta: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", which, "--meta", str(meta)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000, help="rows in each of MRCONSO and MRREL")
    ap.add_argument("--child", choices=("baseline", "kinpath"))
    ap.add_argument("--meta")
    a = ap.parse_args()
    if a.child:
        _child(a.child, a.meta)
        return
    with tempfile.TemporaryDirectory() as tmp:
        meta = Path(tmp) / "META"
        t = time.perf_counter()
        generate(meta, a.rows)
        size_mb = sum(p.stat().st_size for p in meta.iterdir()) / 2**20
        print(
            f"generated {a.rows:,} + {a.rows:,} rows ({size_mb:.0f} MB) in {time.perf_counter() - t:.1f}s"
        )
        base, kin = measure("baseline", meta), measure("kinpath", meta)
    for name, r in (("baseline (read + split)", base), ("kinpath build_graph", kin)):
        print(f"{name:26s} {r['rows'] / r['seconds']:>12,.0f} rows/s   peak {r['peak_mb']:7.0f} MB")
    result = {
        "rows": kin["rows"],
        "kinpath_rows_per_s": round(kin["rows"] / kin["seconds"]),
        "baseline_rows_per_s": round(base["rows"] / base["seconds"]),
        "speed_ratio_vs_baseline": round(base["seconds"] / kin["seconds"], 3),
        "kinpath_peak_mb": round(kin["peak_mb"]),
        "baseline_peak_mb": round(base["peak_mb"]),
        "memory_ratio_vs_baseline": round(kin["peak_mb"] / base["peak_mb"], 2),
        "peak_under_1gb": kin["peak_mb"] < 1024,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
