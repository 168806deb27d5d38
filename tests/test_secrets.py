"""The database secret never shows: not in a repr, an error, its context, or a botocore log."""

import logging

import pytest

from worker.core.errors import ConfigurationError
from worker.logs import WithholdSecrets
from worker.postgres.database import DatabaseCredentials


def test_credentials_repr_leaves_out_the_password() -> None:
    credentials = DatabaseCredentials.from_secret(
        "s", '{"username": "u", "password": "canary-1", "host": "h", "port": 5, "dbname": "d"}'
    )

    assert credentials.password == "canary-1"
    assert "canary-1" not in repr(credentials)
    assert "canary-1" not in str(credentials)


@pytest.mark.parametrize(
    "text",
    [
        '{"username": "u", "password": "canary-2"',  # not JSON
        '{"password": "canary-2"}',  # no username, host
        '["canary-2"]',
        '{"username": "u", "password": "canary-2", "host": "h", "port": "canary-2"}',
    ],
)
def test_a_malformed_secret_is_named_without_its_text(text: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        DatabaseCredentials.from_secret("ecommerce/rds/credentials", text)

    assert "secret 'ecommerce/rds/credentials' is not JSON with username" in str(caught.value)
    assert "canary-2" not in str(caught.value)
    assert caught.value.__context__ is None
    assert caught.value.__cause__ is None


def test_botocore_records_that_hold_a_secret_string_are_withheld() -> None:
    record = logging.LogRecord(
        "botocore.parsers",
        logging.DEBUG,
        __file__,
        1,
        "Response body:\n%r",
        (b'{"SecretString": "canary-3"}',),
        None,
    )

    assert WithholdSecrets().filter(record)
    assert "canary-3" not in record.getMessage()
