"""MkDocs hook: the reference pages are generated from the code when the site is built.

A page may hold these markers, each replaced by what the installed kinpath says:

- ``<!-- kinpath:cli -->``: ``kinpath SUBCOMMAND --help`` for every subcommand (groups: each
  of their commands), from :data:`kinpath.pipelines.cli.SUBCOMMANDS`;
- ``<!-- kinpath:print-config lightning -->``: ``lightning fit --print_config``, and
  ``<!-- kinpath:print-config run -->``: ``kinpath run --print_config`` (every key and its
  default);
- ``<!-- kinpath:outputs -->``: the output columns of ``kinpath predict`` and the pyfunc, from
  the model's signature (:func:`kinpath.pipelines.model.output_types`) with their meanings
  (:data:`kinpath.pipelines.model.COLUMN_DOCS`).

So the reference cannot drift from the code: a renamed option or column changes the page, and
a column without a meaning fails the build.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
from collections.abc import Callable
from typing import Any

MARKER = re.compile(r"<!-- kinpath:([\w-]+)(?: ([\w-]+))? -->")


def _captured(call: Callable[[], Any]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        call()
    return out.getvalue().rstrip()


def _fence(text: str, lang: str = "text") -> str:
    return f"```{lang}\n{text}\n```"


def cli_reference() -> str:
    from kinpath.pipelines import cli

    os.environ["COLUMNS"] = "100"  # argparse wraps help at the terminal's width
    parts = [_fence(_captured(lambda: cli.main(["--help"])))]
    for name, (module, attr, summary) in cli.SUBCOMMANDS.items():
        target = getattr(importlib.import_module(module), attr)
        commands = [[name, c] for c in target] if isinstance(target, dict) else [[name]]
        parts.append(f"## `kinpath {name}`\n\n{summary}.")
        for argv in commands:
            if len(argv) > 1:
                parts.append(f"### `kinpath {' '.join(argv)}`")
            parts.append(_fence(_captured(lambda a=argv: cli.main([*a, "--help"]))))
    return "\n\n".join(parts)


def print_config(which: str) -> str:
    if which == "lightning":
        from kinpath.phenotyping import cli as lcli

        text = _captured(lambda: lcli.cli(args=["fit", "--print_config"]))
    elif which == "run":
        from kinpath.pipelines import cli

        text = _captured(lambda: cli.main(["run", "--print_config"]))
    else:
        raise ValueError(f"unknown print-config target {which!r}")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return _fence(text.replace(root, "<project>"), "yaml")


def outputs() -> str:
    from kinpath.pipelines.model import COLUMN_DOCS, output_types

    rows = ["| column | type | meaning |", "| --- | --- | --- |"]
    for column, kind in output_types(["<task>"]).items():
        if column not in COLUMN_DOCS:
            raise ValueError(f"output column {column!r} has no entry in COLUMN_DOCS")
        rows.append(f"| `{column}` | {kind} | {COLUMN_DOCS[column]} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, **_: Any) -> str:
    def expand(m: re.Match[str]) -> str:
        kind, arg = m.group(1), m.group(2)
        if kind == "cli":
            return cli_reference()
        if kind == "print-config":
            return print_config(arg or "")
        if kind == "outputs":
            return outputs()
        raise ValueError(f"unknown marker {m.group(0)}")

    return MARKER.sub(expand, markdown)
