"""The TF-IDF + logistic regression baseline, its tasks fitted one after the other and in parallel.

``kinpath run``'s baseline stage fits one regression a task; each fit is single-threaded
(L-BFGS over a sparse matrix), so on a machine of N cores one task at a time leaves N-1 of
them idle. This runs :func:`kinpath.phenotyping.baseline.tfidf_baseline` on the same data
module three times, ``n_jobs=1``, then ``--jobs`` threads, then ``--jobs`` worker processes
(joblib's loky backend, the default; they outlive the call, so they come last), and prints
each one's wall time and peak resident memory (the process and its workers together,
sampled every 0.2 s), their ratios to ``n_jobs=1``'s, and whether every figure is the same
as ``n_jobs=1``'s.

    python bench/tfidf_parallel.py            # the TCGA tables of configs/tcga.yaml
    python bench/tfidf_parallel.py --data tests/fixtures/reports.csv

needs ``../shared/data`` for the default tables.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import threading
import time
from pathlib import Path

import psutil
from joblib import parallel_config

from kinpath.phenotyping.baseline import tfidf_baseline
from kinpath.phenotyping.config import TfidfConfig
from kinpath.phenotyping.data import ReportDataModule

ROOT = Path(__file__).resolve().parents[1]
TCGA = [
    ROOT / "../shared/data/tcga-reports/reports.csv",
    ROOT / "../shared/data/tcga-ocr/reports.csv",
]


class PeakMemory:
    """The largest resident memory of this process and its children, sampled in a thread."""

    def __init__(self) -> None:
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process(os.getpid())
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                # a worker that ended between listing and reading counts nothing
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
            self.peak = max(self.peak, total)
            self._stop.wait(0.2)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def timed(dm: ReportDataModule, jobs: int, backend: str) -> tuple[float, int, dict[str, float]]:
    with PeakMemory() as mem, parallel_config(backend=backend):
        t = time.perf_counter()
        metrics = tfidf_baseline(dm, TfidfConfig(n_jobs=jobs))
        seconds = time.perf_counter() - t
    return seconds, mem.peak, metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", type=Path, default=TCGA, help="report tables")
    ap.add_argument("--jobs", type=int, default=2, help="threads, then processes")
    args = ap.parse_args()
    missing = [str(p) for p in args.data if not p.exists()]
    if missing:
        raise SystemExit(f"report table(s) not found: {', '.join(missing)}")
    dm = ReportDataModule([str(p) for p in args.data], seed=42)
    print(f"{len(dm.splits['train'])} training reports, tasks {', '.join(dm.tasks)}; "
          f"{psutil.cpu_count(logical=True)} cores", flush=True)  # fmt: skip
    serial, serial_mem, one = timed(dm, 1, "loky")
    print(f"n_jobs=1: {serial:.1f} s, peak resident {serial_mem / 2**30:.2f} GiB", flush=True)
    for backend in ("threading", "loky"):
        seconds, mem, many = timed(dm, args.jobs, backend)
        differ = sorted(k for k in one.keys() | many.keys() if one.get(k) != many.get(k))
        print(f"n_jobs={args.jobs} {backend}: {seconds:.1f} s ({seconds / serial:.2f} of n_jobs=1), "
              f"peak resident {mem / 2**30:.2f} GiB ({mem / serial_mem:.2f}); "
              + ("every figure the same" if not differ else f"figures differ: {', '.join(differ)}"),
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
