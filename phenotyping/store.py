"""Which MLflow store a kinpath command uses: one resolver for every command.

Kept apart from :mod:`kinpath.phenotyping.cli` (which loads Lightning) so that the batch job, the
registry commands and ``kinpath run`` resolve the store the same way without loading it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kinpath.common import warn_if_password

DEFAULT_TRACKING_URI = "sqlite:///mlruns.db"


def tracking_uri(uri: str | None = None) -> str:
    """The MLflow store every kinpath command uses: the given URI, else
    ``MLFLOW_TRACKING_URI``, else the embedded SQLite default; a relative SQLite path is
    made absolute against the project folder (the nearest folder up with a
    ``pyproject.toml``, else the current one), so a command run from a subfolder opens the
    same store as ``kinpath run``."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    warn_if_password(uri)
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        here = Path.cwd()
        project = next((d for d in (here, *here.parents) if (d / "pyproject.toml").exists()), here)
        uri = prefix + str(project / uri[len(prefix) :])
    return uri


def existing_store(uri: str | None = None) -> str:
    """:func:`tracking_uri`, for a command that only reads (loads a model, lists versions):
    a SQLite store that does not exist is an error naming it, never a new empty store."""
    from kinpath.common import InputError

    resolved = tracking_uri(uri)
    prefix = "sqlite:///"
    if resolved.startswith(prefix):
        path = Path(resolved[len(prefix) :].split("?", 1)[0])
        if not path.is_file():
            raise InputError(
                f"no MLflow store at {path} (tracking URI {resolved}): point MLFLOW_TRACKING_URI "
                "or --tracking_uri at the store that holds the model"
            )
    return resolved


@contextmanager
def using_store(uri: str) -> Iterator[str]:
    """MLflow's fluent API (``start_run``, ``log_model``, loading a model by its
    registry name) reads the process-wide tracking URI. Set it to ``uri`` for the block
    only, then put back what was there (and ``MLFLOW_TRACKING_URI`` as it was), so that no
    library call leaves another store behind for the caller's next MLflow call."""
    import mlflow

    env = os.environ.get("MLFLOW_TRACKING_URI")
    before = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield uri
    finally:
        mlflow.set_tracking_uri(before)  # type: ignore[arg-type]  # None: unset, as it was
        if env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env
