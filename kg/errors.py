"""The one error type for bad input, shared by every stage.

It names where the problem is (file and line, or record id) and what was wrong,
and never quotes the offending content: a report line is protected health
information, and an RRF row may be licensed text.
"""

from __future__ import annotations

from pathlib import Path


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
