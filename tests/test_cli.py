"""The console script as an operator runs it: a real process, its exit code and its output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import CANARY_PASSWORD, Stack
from worker.postgres.database import DatabaseCredentials

KEY = "uploads/ACME/ACME_20241105_093015.csv"
BODY = "vendor_product_id,product_name,category,sku,price,stock_quantity\nP-1,Cup,K,S-1,1.00,3\n"


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.runtimes.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def stack_env(stack: Stack) -> dict[str, str]:
    settings = stack.settings
    return {
        "AWS_ENDPOINT_URL": settings.aws_endpoint_url or "",
        "INGEST_QUEUE_URL": settings.ingest_queue_url or "",
        "DLQ_URL": settings.dlq_url or "",
        "VALIDATION_QUEUE_URL": settings.validation_queue_url or "",
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


def database_url(credentials: DatabaseCredentials) -> str:
    if credentials.host.startswith("/"):
        return f"postgresql://{credentials.username}@/postgres?host={credentials.host}"
    return f"postgresql://{credentials.username}@{credentials.host}:{credentials.port}/postgres"


def test_demo_runs_the_flow_end_to_end(tmp_path: Path, pg_server: DatabaseCredentials) -> None:
    result = cli(
        "demo",
        "--database-url",
        database_url(pg_server),
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
