"""What every stage shares: the error for bad input, credentials kept out of messages, and
the log setup of every kinpath command.

* :class:`InputError`: bad input names where the problem is (file and line, or record id)
  and what was wrong, and never quotes the offending content: a report line is protected
  health information, and an RRF row may be licensed text.
* :func:`redact`: a hospital's connection string may carry a password
  (``postgresql://user:pw@host/db``, ``?password=pw``), and libpq and MLflow echo a
  malformed one whole in their errors; every error and log line the ``kinpath`` command
  prints passes through it (:class:`RedactingFilter`), and :func:`warn_if_password` says
  once that the password belongs in ``PGPASSWORD`` or ``~/.pgpass`` instead.
* :func:`setup`, called by each command's ``main`` (``kinpath``, ``lightning``): INFO lines
  from kinpath on standard error, and the warnings that libraries raise about themselves
  rather than about the user's data silenced (scispacy's empty abbreviation matcher W036,
  spaCy's regex FutureWarning, LightningCLI's note on ``args``, PyTorch's pytree
  deprecation, Lightning's logging-interval hint on small data and its advertisement for a
  cloud logger, MLflow's input-example advice, since kinpath stores no report as an example
  on purpose, and its artifact progress bars).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from pathlib import Path

log = logging.getLogger(__name__)


class InputError(ValueError):
    """Bad input: a file, line or record that cannot be read as documented."""

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        where = ""
        if self.path is not None:
            where = self.path if line is None else f"{self.path}:{line}"
            where += ": "
        super().__init__(where + message)


# scheme://user:password@  (the password is everything up to the last '@' before the host)
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):[^\s]*@")
# key=value forms: ?password=..., &password=..., libpq's "password=..." (quoted or not)
_KEYVALUE = re.compile(r"(\bpassword\s*=\s*)('[^']*'|\"[^\"]*\"|[^&\s'\"]+)", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every URI password and ``password=`` value replaced by ``***``."""
    return _KEYVALUE.sub(r"\1***", _USERINFO.sub(r"\1:***@", text))


def has_password(uri: str) -> bool:
    return redact(uri) != uri


_WARNED: set[str] = set()


def warn_if_password(uri: str) -> None:
    """Say once per URI that it carries a password."""
    if has_password(uri) and uri not in _WARNED:
        _WARNED.add(uri)
        log.warning(
            "the URI %s carries a password: it can end up in shell history, configs and process "
            "lists; leave it out and set PGPASSWORD or a ~/.pgpass entry instead",
            redact(uri),
        )


class RedactingFilter(logging.Filter):
    """A handler filter: the formatted message, with credentials redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


IGNORED = (
    r".*\[W036\]",
    r"Possible set union",
    r"LightningCLI's args parameter",
    r".*LeafSpec.* is deprecated",
    r"The number of training batches .* is smaller than the logging interval",
    r".*An input example was not provided",
    r".*does not have many workers which may be a bottleneck",
)


class _Drop(logging.Filter):
    """Drops a library's line that concerns the library, not the user's work."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def setup(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    for noisy in ("gensim", "nmslib", "pykeen", "torch_max_mem", "mlflow.store.db.utils",
                  "alembic", "mlflow.tracking.fluent"):  # fmt: skip
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # MLflow's cloudpickle advice concerns how the model is logged; Lightning's tip advertises
    # a hosted logger (the GPU/TPU lines before it stay: they say where a fit runs)
    logging.getLogger("mlflow.pyfunc").addFilter(
        _Drop("causes it to be serialized using CloudPickle")
    )
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_Drop("litlogger"))
    for pattern in IGNORED:
        warnings.filterwarnings("ignore", message=pattern)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
