"""The ``kinpath`` command: one entry point, a subcommand group per package.

``kinpath kg build|stats|link|embed``, ``kinpath embed train|compare|evaluate``,
``kinpath phenotype compare``, ``kinpath registry register|promote|list``,
``kinpath predict``, ``kinpath run`` and ``kinpath demo``. Every subcommand reads ``-c
config.yaml`` (jsonargparse): the YAML's keys are the subcommand's options.
Options may be spelled with dashes or underscores (``--on-error`` or
``--on_error``). Bad input exits with status 2 and a message naming the file
and line; it never quotes the content.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from jsonargparse import CLI

from embeddings.cli import COMMANDS as EMBED_COMMANDS
from kg.cli import COMMANDS as KG_COMMANDS
from kg.errors import InputError
from phenotyping.compare import COMMANDS as PHENOTYPE_COMMANDS
from pipelines.jobs import REGISTRY_COMMANDS, predict
from pipelines.run import demo, run

log = logging.getLogger("kinpath")


# switches that read naturally bare: `--resume` means `--resume true`
BARE_FLAGS = frozenset({"--resume", "--overwrite"})


def normalize_argv(argv: Sequence[str]) -> list[str]:
    """``-c`` → ``--config``, ``--on-error=x`` → ``--on_error=x``, bare ``--resume`` → ``--resume true``."""
    out: list[str] = []
    for k, a in enumerate(argv):
        if a == "-c":
            a = "--config"
        elif a.startswith("--") and len(a) > 2:
            name, eq, value = a[2:].partition("=")
            a = "--" + name.replace("-", "_") + eq + value
        out.append(a)
        nxt = argv[k + 1] if k + 1 < len(argv) else "--"
        if a in BARE_FLAGS and nxt.lower() not in ("true", "false"):
            out.append("true")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("gensim", "nmslib", "pykeen", "torch_max_mem"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = normalize_argv(sys.argv[1:] if argv is None else argv)
    try:
        CLI(
            {
                "kg": KG_COMMANDS,
                "embed": EMBED_COMMANDS,
                "phenotype": PHENOTYPE_COMMANDS,
                "registry": REGISTRY_COMMANDS,
                "predict": predict,
                "run": run,
                "demo": demo,
            },
            args=args,
            prog="kinpath",
        )
    except InputError as e:
        print(f"kinpath: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
