"""Credentials never reach a message: URIs are redacted wherever kinpath prints or logs them.

A hospital's connection string may carry a password (``postgresql://user:pw@host/db``,
``?password=pw``); libpq and MLflow echo a malformed one whole in their errors.
:func:`redact` replaces every password with ``***``; the ``kinpath`` command passes every
error and log line through it, and :func:`warn_if_password` says once that the password
belongs in ``PGPASSWORD`` or ``~/.pgpass`` instead.
"""

from __future__ import annotations

import logging
import re

log = logging.getLogger(__name__)

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
