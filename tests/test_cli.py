"""The console script as an operator runs it: a real process, its exit code and its output."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.conftest import CANARY_PASSWORD, Stack, s3_event
from worker.local.servers import free_port
from worker.postgres.database import DatabaseCredentials
from worker.resources import NO_CREDENTIALS

KEY = "uploads/ACME/ACME_20241105_093015.csv"
BODY = "vendor_product_id,product_name,category,sku,price,stock_quantity\nP-1,Cup,K,S-1,1.00,3\n"


def cli(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    unset: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in unset}
    return subprocess.run(
        [sys.executable, "-m", "worker.runtimes.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**environ, **(env or {})},
        check=False,
    )


def stack_env(stack: Stack) -> dict[str, str]:
    settings = stack.settings
    return {
        "AWS_ENDPOINT_URL": settings.aws_endpoint_url or "",
        "INGEST_QUEUE_URL": settings.ingest_queue_url or "",
        "DLQ_URL": settings.dlq_url or "",
        "VALIDATION_QUEUE_URL": settings.validation_queue_url or "",
        "VALIDATION_DLQ_URL": settings.validation_dlq_url or "",
        "ERROR_QUEUE_URL": settings.error_queue_url or "",
        "NOTICE_TOPIC_ARN": settings.notice_topic_arn or "",
        "RECEIVE_WAIT_SECONDS": "0",
        "STARTUP_ATTEMPTS": "1",
        "HEALTH_PORT": "0",
        "DATABASE_SSL_MODE": settings.database_ssl_mode,
    }


def test_help_lists_the_commands() -> None:
    result = cli("--help")

    assert result.returncode == 0
    for command in ("run", "migrate", "local", "demo"):
        assert command in result.stdout


def test_a_usage_error_exits_2() -> None:
    result = cli("frobnicate")

    assert result.returncode == 2
    assert "invalid choice: 'frobnicate'" in result.stderr


@pytest.mark.parametrize(
    ("command", "says"),
    [
        ("run", ["Run the worker", "required: INGEST_QUEUE_URL", "RDS_SECRET_NAME"]),
        ("migrate", ["Apply the schema migrations", "RDS_SECRET_NAME", "DATABASE_SSL_MODE"]),
        ("uploads", ["List the most recent uploads", "RDS_SECRET_NAME"]),
        ("healthcheck", ["whether it is live", "HEALTH_PORT (unless --port is given)"]),
        (
            "dlq",
            [
                "consume nothing",
                "required: DLQ_URL (--queue validation: VALIDATION_DLQ_URL)",
                "redrive also: INGEST_QUEUE_URL (--queue validation: VALIDATION_QUEUE_URL)",
            ],
        ),
        ("validate", ["Run the validation stage", "VALIDATION_QUEUE_URL, ERROR_QUEUE_URL"]),
        ("reprocess", ["Stage one S3 object now", "RDS_SECRET_NAME"]),
        ("local", ["start a moto server", "no settings", "VENDOR_ONBOARDING_HOME"]),
        ("demo", ["upload four sample files", "no settings", "VENDOR_ONBOARDING_HOME"]),
    ],
)
def test_every_command_says_what_it_does_and_what_it_needs(command: str, says: list[str]) -> None:
    result = cli(command, "--help")

    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert f"usage: vendor-onboarding {command}" in text
    assert "settings (environment variables; README.md, Configuration):" in text
    for phrase in says:
        assert phrase in text


def test_version() -> None:
    result = cli("--version")

    assert result.returncode == 0
    assert result.stdout == f"vendor-onboarding {importlib.metadata.version('vendor-onboarding')}\n"


def test_an_invalid_setting_is_one_readable_line() -> None:
    result = cli("run", "--drain", env={"FILES_IN_FLIGHT": "0"})

    assert result.returncode == 1
    assert result.stderr == (
        "error: invalid setting FILES_IN_FLIGHT=0: should be greater than or equal to 1\n"
    )


def test_several_invalid_settings_are_still_one_line() -> None:
    result = cli("migrate", env={"FILES_IN_FLIGHT": "many", "DATABASE_SSL_MODE": "on"})

    assert result.returncode == 1
    assert result.stderr == (
        "error: invalid settings: FILES_IN_FLIGHT=many: should be a valid integer, unable to "
        "parse string as an integer; DATABASE_SSL_MODE=on: should be 'disable', 'prefer', "
        "'require', 'verify-ca' or 'verify-full'\n"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--log-level", "debug", "healthcheck", "--port", "{port}"],
        ["healthcheck", "--port", "{port}", "--log-level", "debug"],
    ],
)
def test_the_log_level_goes_before_or_after_the_command(args: list[str]) -> None:
    port = str(free_port())  # nobody listens: the check fails (1), the arguments are fine
    result = cli(*(arg.format(port=port) for arg in args))

    assert result.returncode == 1
    assert f"127.0.0.1:{port}/healthz/live" in result.stderr


@pytest.mark.parametrize(
    "args", [["--log-level", "loud", "migrate"], ["migrate", "--log-level", "loud"]]
)
def test_an_unknown_log_level_is_a_usage_error(args: list[str]) -> None:
    result = cli(*args)

    assert result.returncode == 2
    assert (
        "argument --log-level: invalid choice: 'LOUD' "
        "(choose from 'DEBUG', 'INFO', 'WARNING', 'ERROR')" in result.stderr
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["uploads", "--limit", "abc"],
            "argument --limit: expected a whole number of at least 1, got 'abc'",
        ),
        (
            ["dlq", "peek", "--limit", "0"],
            "argument --limit: expected a whole number of at least 1, got '0'",
        ),
        (
            ["healthcheck", "--port", "http"],
            "argument --port: expected a port number (0-65535), got 'http'",
        ),
        (
            ["healthcheck", "--timeout", "soon"],
            "argument --timeout: expected a number of seconds above 0, got 'soon'",
        ),
        (
            ["local", "up", "--port", "99999"],
            "argument --port: expected a port number (0-65535), got '99999'",
        ),
    ],
)
def test_a_bad_value_is_described_without_internal_names(args: list[str], says: str) -> None:
    result = cli(*args)

    assert result.returncode == 2
    assert says in result.stderr
    assert "invalid" not in result.stderr
    assert "_positive" not in result.stderr


NO_AWS_FILES = {
    "AWS_CONFIG_FILE": "/nonexistent/config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def test_missing_aws_credentials_are_a_configuration_error_at_once(stack: Stack) -> None:
    result = cli(
        "migrate",
        env={**stack_env(stack), **NO_AWS_FILES, "STARTUP_ATTEMPTS": "5"},
        unset=("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"),
    )

    assert result.returncode == 1
    assert result.stderr == f"error: {NO_CREDENTIALS}\n"


def test_a_missing_secret_is_a_configuration_error_at_once(stack: Stack) -> None:
    result = cli(
        "migrate",
        env={**stack_env(stack), "RDS_SECRET_NAME": "no/such/secret", "STARTUP_ATTEMPTS": "5"},
    )

    assert result.returncode == 1
    assert result.stderr == "error: secret 'no/such/secret': ResourceNotFoundException\n"


async def test_dlq_peek_needs_sqs_alone(stack: Stack) -> None:
    # GIVEN an S3 notification in the DLQ
    async with stack.session_client("sqs") as sqs:
        await sqs.send_message(
            QueueUrl=stack.settings.dlq_url or "", MessageBody=s3_event(stack.bucket, KEY)
        )

    # WHEN only SQS can be reached: every other service points at a port nobody listens on
    result = cli(
        "dlq",
        "peek",
        env={
            **stack_env(stack),
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
            "AWS_ENDPOINT_URL_SQS": stack.settings.aws_endpoint_url or "",
        },
    )

    # THEN the queue is shown all the same, and the missing database is a note
    assert result.returncode == 0, result.stderr
    (row,) = [line for line in result.stdout.splitlines() if line.startswith("UPLOAD_ACME")]
    assert row.startswith("UPLOAD_ACME_20241105_093015")
    assert KEY in row
    assert "note: upload_history not consulted (Secrets Manager unreachable" in result.stderr


def test_run_without_a_queue_says_which_setting_is_missing() -> None:
    result = cli("run", "--drain", env={"INGEST_QUEUE_URL": ""})

    assert result.returncode == 1
    assert "error: INGEST_QUEUE_URL is not set" in result.stderr


def test_run_with_a_missing_table_fails_at_start_up(stack: Stack) -> None:
    result = cli("run", "--drain", env={**stack_env(stack), "DYNAMODB_TABLE": "NoSuchTable"})

    assert result.returncode == 1
    assert "error: table NoSuchTable is not reachable: ResourceNotFoundException" in result.stderr


def test_run_with_a_missing_secret_fails_at_start_up(stack: Stack) -> None:
    result = cli("run", "--drain", env={**stack_env(stack), "RDS_SECRET_NAME": "no/such/secret"})

    assert result.returncode == 1
    assert "error: secret 'no/such/secret': ResourceNotFoundException" in result.stderr


async def test_run_drain_stages_and_validates_and_logs_json_lines(stack: Stack) -> None:
    await stack.add_vendor("ACME")
    await stack.put_object(KEY, BODY)

    result = cli("run", "--drain", env=stack_env(stack))

    assert result.returncode == 0, result.stderr
    history = await stack.history("UPLOAD_ACME_20241105_093015")
    assert history is not None
    # Staged, then validated by the worker's second loop.
    assert (history["status"], history["valid_records"]) == ("validated", 1)
    events = [json.loads(line) for line in result.stderr.splitlines()]
    staged = [event for event in events if event["event"] == "upload staged"]
    assert staged[0]["upload_id"] == "UPLOAD_ACME_20241105_093015"
    assert staged[0]["vendor_id"] == "ACME"
    assert staged[0]["message_id"]
    assert CANARY_PASSWORD not in result.stdout + result.stderr


def test_migrate_is_idempotent(stack: Stack) -> None:
    result = cli("migrate", env=stack_env(stack))

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "schema is up to date"


def database_url(credentials: DatabaseCredentials, dbname: str = "postgres") -> str:
    if credentials.host.startswith("/"):
        return f"postgresql://{credentials.username}@/{dbname}?host={credentials.host}"
    return f"postgresql://{credentials.username}@{credentials.host}:{credentials.port}/{dbname}"


def test_demo_runs_the_flow_end_to_end(
    tmp_path: Path, pg_server: DatabaseCredentials, scratch_database: str
) -> None:
    result = cli(
        "demo",
        "--database-url",
        database_url(pg_server, scratch_database),
        env={"VENDOR_ONBOARDING_HOME": str(tmp_path / "stack")},
        timeout=180,
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    summary = {line.split("  ")[0]: line for line in lines if line.startswith("a ")}
    # status, rows, valid, invalid, products
    assert summary["a clean file"].split()[3:8] == ["validated", "5", "5", "0", "5"]
    assert summary["a file with bad rows"].split()[5:10] == ["validated", "7", "2", "5", "2"]
    assert "row 7: sku: must be unique in the file (row 1)" in result.stdout
    assert "report: reports/ACME/UPLOAD_ACME_" in result.stdout
    assert "rejected" in summary["a file from a suspended vendor"]
    assert "rejected" in summary["a file with a broken header"]
    assert "vendor 'INITECH' is suspended, not active" in result.stdout
    assert "missing required column(s): price" in result.stdout
    # The demo stops the moto server it started.
    assert not (tmp_path / "stack" / "moto.pid").exists()
