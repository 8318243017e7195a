"""What every kinpath command shows a person: its own log lines, not library noise.

:func:`setup` is called by each command's ``main`` (``kinpath``, ``lightning``):
INFO lines from kinpath's packages on standard error, and the warnings that
libraries raise about themselves rather than about the user's data silenced —
scispacy's empty abbreviation matcher (W036), spaCy's regex FutureWarning,
LightningCLI's note on ``args``, PyTorch's pytree deprecation, Lightning's
logging-interval hint on small data and its advertisement for a cloud logger,
MLflow's input-example advice (kinpath stores no report as an example, on
purpose) and its artifact progress bars. Every line passes through
:class:`kinpath.kg.secrets.RedactingFilter`: no password reaches a log.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

from kinpath.kg.secrets import RedactingFilter

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
