"""The ``kinpath`` command: one entry point, a subcommand group per package.

``kinpath kg build|stats|link|embed``, ``kinpath embed train|compare|evaluate``,
``kinpath phenotype compare``, ``kinpath registry register|promote|list|ensemble``,
``kinpath predict``, ``kinpath drift``, ``kinpath evaluate``, ``kinpath review
serve|export|add-user``, ``kinpath run`` and
``kinpath demo``. Every subcommand reads ``-c
config.yaml`` (jsonargparse): the YAML's keys are the subcommand's options.
Options may be spelled with dashes or underscores (``--on-error`` or
``--on_error``). Bad input exits with status 2 and a message naming the file
and line; it never quotes the content. No message or log line carries a password
(:mod:`kinpath.common`).

Only the named subcommand's module is imported, so ``kinpath --help`` and
``kinpath predict --help`` answer without loading spaCy, Lightning or MLflow.
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from kinpath.common import InputError, redact

log = logging.getLogger("kinpath")

# subcommand -> (module, attribute, one line of help)
SUBCOMMANDS = {
    "kg": ("kinpath.kg.cli", "COMMANDS", "knowledge graph: build (UMLS RRF / OBO), stats, link a corpus, embed (pykeen)"),
    "embed": ("kinpath.embeddings.cli", "COMMANDS", "word vectors: train, compare (word2vec / retrofit / kg-joint), evaluate"),
    "phenotype": ("kinpath.phenotyping.compare", "COMMANDS", "compare MT-CNN initializations and the TF-IDF baseline"),
    "registry": ("kinpath.pipelines.jobs", "REGISTRY_COMMANDS", "MLflow model registry: register, promote, list, ensemble (seeds as one model)"),
    "predict": ("kinpath.pipelines.jobs", "predict", "score reports with a registered model (files or an OMOP warehouse; resumable)"),
    "drift": ("kinpath.pipelines.jobs", "drift", "is a batch like the model's validation reports? ok / warn / stop (exit 3)"),
    "evaluate": ("kinpath.pipelines.institutions", "evaluate", "unseen institutions: folds by hospital, drift verdicts, recalibration"),
    "omop": ("kinpath.pipelines.jobs", "OMOP_COMMANDS", "OMOP warehouse: init-schema (CDM v5.4 NOTE, NOTE_NLP)"),
    "review": ("kinpath.pipelines.review.cli", "COMMANDS", "the registrars' review queue: serve (web app), export (training table), add-user"),
    "run": ("kinpath.pipelines.run", "run", "the whole pipeline from a config, stages cached"),
    "demo": ("kinpath.pipelines.run", "demo", "the pipeline on synthetic reports and a synthetic graph"),
}  # fmt: skip

USAGE = (
    "usage: kinpath [-h] {"
    + ",".join(SUBCOMMANDS)
    + "} ...\n\n"
    + (
        "Knowledge-infused coding of cancer pathology reports (site, subsite, laterality,\n"
        "behavior, histology, grade). `kinpath SUBCOMMAND --help` for its options.\n\n"
        "subcommands:\n"
    )
    + "".join(f"  {k:<10} {v[2]}\n" for k, v in SUBCOMMANDS.items())
)


# switches that read naturally bare: `--resume` means `--resume true`
BARE_FLAGS = frozenset({"--resume", "--overwrite", "--json", "--trust_proxy", "--password_stdin",
                        "--report_only", "--rescore"})  # fmt: skip


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
    from kinpath.common import setup

    setup()
    args = normalize_argv(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    if args[0] not in SUBCOMMANDS:
        print(USAGE, end="", file=sys.stderr)
        print(f"kinpath: error: unknown subcommand {args[0]!r}", file=sys.stderr)
        return 2
    module, attr, _ = SUBCOMMANDS[args[0]]
    from jsonargparse import CLI, DefaultHelpFormatter

    class Help(DefaultHelpFormatter):
        """jsonargparse names a bare class as "<class 'Path'>": name it as "Path"."""

        def _get_type_str(self, action: Any) -> str | None:
            text = super()._get_type_str(action)
            return None if text is None else re.sub(r"<class '(?:\w+\.)*(\w+)'>", r"\1", text)

    try:
        target = getattr(importlib.import_module(module), attr)
        CLI({args[0]: target}, args=args, prog="kinpath", formatter_class=Help)
    except InputError as e:
        print(f"kinpath: error: {redact(str(e))}", file=sys.stderr)
        return 2
    except Exception:  # a bug: the traceback helps, a password in it must not travel with it
        print(redact(traceback.format_exc()), end="", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
