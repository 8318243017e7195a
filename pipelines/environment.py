"""What a run was made with, for the auditor who asks whether a model can be rebuilt: every
installed distribution's version, the interpreter and platform, the processor, the thread
settings and the determinism switches. ``kinpath run`` writes it once per environment into
``work/environments/<id>.json`` and names that id in the ``stage.json`` of each stage it
runs, so a cached stage keeps pointing at the environment that made it."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import sys
from pathlib import Path

# the environment variables that change how many threads the numerical libraries use, or
# how Python and CUDA order their work
VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "PYTHONHASHSEED",
             "CUBLAS_WORKSPACE_CONFIG")  # fmt: skip
# the instruction sets that decide which kernels torch (oneDNN), numpy's and gensim's BLAS
# run: the same code, versions and threads on a processor with other ones sum in another
# order, and a fit's figures move (docs/results/tcga.md)
INSTRUCTION_SETS = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
                    "amx_tile", "amx_int8", "amx_bf16")  # fmt: skip


def processor() -> dict:
    """The processor's model and those of :data:`INSTRUCTION_SETS` it has (Linux's
    /proc/cpuinfo; elsewhere the platform's name alone), and the kernels torch dispatches to."""
    import torch

    from kinpath.phenotyping.precision import cpu_info

    model, flags = cpu_info()
    return {
        "model": model or platform.processor() or platform.machine(),
        "instruction_sets": [f for f in INSTRUCTION_SETS if f in flags],
        "torch_kernels": torch.backends.cpu.get_cpu_capability(),
    }


def machine() -> str:
    """The machine in a documentation page's line of what made it: its name, CPUs,
    processor and torch's kernels."""
    p = processor()
    return f"{platform.node()} ({os.cpu_count()} CPUs, {p['model']}, torch kernels {p['torch_kernels']})"


def environment(reproducible: bool, word2vec_workers: int) -> dict:
    """The packages, interpreter, machine, threads and switches of this process."""
    import torch

    packages = {
        d.metadata["Name"]: d.version
        for d in importlib.metadata.distributions()
        if d.metadata["Name"]
    }
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": processor(),
        "threads": {
            "torch": torch.get_num_threads(),
            "torch_interop": torch.get_num_interop_threads(),
            "word2vec_workers": word2vec_workers,
        },
        "variables": {v: os.environ.get(v) for v in VARIABLES},
        "reproducible": reproducible,
        "packages": dict(sorted(packages.items(), key=lambda kv: kv[0].lower())),
    }


def record(work: Path, env: dict) -> str:
    """Write ``env`` under ``work/environments/`` (once per distinct content); its id."""
    text = json.dumps(env, indent=2) + "\n"
    ident = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = work / "environments" / f"{ident}.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return ident
