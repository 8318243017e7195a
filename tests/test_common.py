"""No password reaches a message: URIs are redacted wherever kinpath prints or logs them."""

import logging

import pytest

from kinpath.common import RedactingFilter, has_password, redact, warn_if_password


@pytest.mark.parametrize(
    ("text", "clean"),
    [
        ("postgresql://postgres:S3cretPW9z@[bad/postgres", "postgresql://postgres:***@[bad/postgres"),
        ("at postgresql+psycopg://kp:S3cretPW9z@db:5432/mlflow now", "at postgresql+psycopg://kp:***@db:5432/mlflow now"),
        ("postgresql://kp@db/cdm?password=S3cretPW9z&sslmode=require", "postgresql://kp@db/cdm?password=***&sslmode=require"),
        ("host=db password='S3cret PW9z' dbname=cdm", "host=db password=*** dbname=cdm"),
        ("postgresql://kp@db/cdm", "postgresql://kp@db/cdm"),
        ("http://127.0.0.1:5000/#/experiments/1", "http://127.0.0.1:5000/#/experiments/1"),
    ],
)  # fmt: skip
def test_passwords_are_redacted_and_nothing_else(text: str, clean: str) -> None:
    assert redact(text) == clean
    assert has_password(text) == (text != clean)


def test_a_password_uri_is_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    uri = "postgresql://kp:OnceOnly77@db/cdm"
    warn_if_password(uri)
    warn_if_password(uri)
    warned = [r for r in caplog.records if "carries a password" in r.getMessage()]
    assert len(warned) == 1 and "OnceOnly77" not in caplog.text and "PGPASSWORD" in caplog.text


def test_log_lines_pass_through_the_filter() -> None:
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "store %s", ("mysql://u:pw1@h/d",), None
    )
    assert RedactingFilter().filter(record) and record.getMessage() == "store mysql://u:***@h/d"
