"""Real database faults on a PostgreSQL of the test's own, with password authentication: the
server stopped and restored, and the password rotated while the worker runs. The password
is a canary that must never appear in a log line or an error."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Stack
from tests.test_cli import cli, stack_env
from worker.local.provision import connect, prepare_database
from worker.local.servers import EmbeddedPostgres
from worker.postgres.database import DatabaseCredentials
from worker.resources import Resources
from worker.runtimes.consumer import Consumer

BODY = "vendor_product_id,product_name,category,sku,price,stock_quantity\nP-1,Cup,K,S-1,1.00,3\n"


@dataclass
class PrivateDatabase:
    server: EmbeddedPostgres
    admin: DatabaseCredentials  # superuser, trusted on the socket
    app: DatabaseCredentials  # what the secret holds

    async def status(self, upload_id: str) -> str | None:
        conn = await connect(self.admin)
        try:
            status: str | None = await conn.fetchval(
                "SELECT status FROM upload_history WHERE upload_id = $1", upload_id
            )
            return status
        finally:
            await conn.close()


async def put_secret(stack: Stack, credentials: DatabaseCredentials) -> None:
    async with stack.session_client("secretsmanager") as client:
        await client.put_secret_value(
            SecretId=stack.names.secret,
            SecretString=json.dumps(
                {
                    "username": credentials.username,
                    "password": credentials.password,
                    "host": credentials.host,
                    "port": credentials.port,
                    "dbname": credentials.dbname,
                }
            ),
        )


@pytest.fixture
async def private_db(stack: Stack, tmp_path: Path) -> AsyncIterator[PrivateDatabase]:
    server = EmbeddedPostgres(tmp_path / "postgres")
    superuser = server.start()
    (server.data_dir / "pg_hba.conf").write_text(
        "local all postgres trust\nlocal all all scram-sha-256\n"
    )
    password = f"canary-{secrets.token_hex(8)}"
    conn = await connect(superuser)
    try:
        await conn.execute("SELECT pg_reload_conf()")
        await conn.execute(f"CREATE ROLE app LOGIN CREATEDB PASSWORD '{password}'")
    finally:
        await conn.close()
    app = await prepare_database(
        DatabaseCredentials("app", password, superuser.host, superuser.port, "postgres"),
        "vendor_onboarding",
    )
    await put_secret(stack, app)
    admin = DatabaseCredentials("postgres", "", superuser.host, superuser.port, app.dbname)
    yield PrivateDatabase(server, admin, app)
    server.stop()


async def test_password_rotation_while_the_worker_runs(
    stack: Stack, private_db: PrivateDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    old_password = private_db.app.password
    new_password = f"canary-{secrets.token_hex(8)}"
    settings = stack.settings.model_copy(update={"secret_ttl_seconds": 3600})
    async with Resources.open(settings) as res:
        await stack.put_object("uploads/ACME/ACME_20240101_000001.csv", BODY)
        await Consumer(res).run(drain=True)
        assert await private_db.status("UPLOAD_ACME_20240101_000001") == "staged"

        # WHEN the password is rotated (database and secret) and open sessions are cut
        admin = await connect(private_db.admin)
        try:
            await admin.execute(f"ALTER ROLE app PASSWORD '{new_password}'")
            await put_secret(
                stack,
                DatabaseCredentials(
                    "app",
                    new_password,
                    private_db.app.host,
                    private_db.app.port,
                    "vendor_onboarding",
                ),
            )
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'app'"
            )
        finally:
            await admin.close()
        await stack.put_object("uploads/ACME/ACME_20240101_000002.csv", BODY)
        await Consumer(res).run(drain=True)

    # THEN the same worker keeps working, with the new password read from the secret
    assert await private_db.status("UPLOAD_ACME_20240101_000002") == "staged"
    assert "re-reading the secret" in caplog.text
    logged = caplog.text + "".join(repr(record.__dict__) for record in caplog.records)
    assert old_password not in logged
    assert new_password not in logged


async def test_a_wrong_password_fails_at_start_up_without_showing_it(
    stack: Stack, private_db: PrivateDatabase
) -> None:
    wrong = "canary-wrong-password"
    app = private_db.app
    await put_secret(stack, DatabaseCredentials("app", wrong, app.host, app.port, app.dbname))

    result = cli("--log-level", "DEBUG", "run", "--drain", env=stack_env(stack))

    assert result.returncode == 1
    assert 'password authentication failed for user "app"' in result.stderr
    assert wrong not in result.stderr + result.stdout
    assert app.password not in result.stderr + result.stdout


async def test_a_database_outage_sends_uploads_to_the_dlq_and_redrive_recovers_them(
    stack: Stack, private_db: PrivateDatabase
) -> None:
    settings = stack.settings.model_copy(update={"retry_backoff_seconds": 0})
    async with Resources.open(settings) as res:
        # GIVEN the database goes away while the worker runs
        private_db.server.stop()
        await stack.put_object("uploads/ACME/ACME_20240101_000003.csv", BODY)
        # WHEN the worker meets it: every delivery fails, and the worker carries on
        await Consumer(res).run(drain=True)

    # THEN after maxReceiveCount deliveries the message is in the DLQ
    assert await stack.queue_messages(stack.settings.ingest_queue_url or "") == []
    (dead,) = await stack.queue_messages(stack.settings.dlq_url or "")
    assert "ACME_20240101_000003.csv" in dead["Body"]

    # WHEN the database is back and an operator redrives the DLQ
    private_db.server.start()
    # The server may still be starting: connect with the usual start-up retries.
    result = cli("dlq", "redrive", env={**stack_env(stack), "STARTUP_ATTEMPTS": "5"})
    assert result.returncode == 0, result.stderr
    await stack.run_worker(startup_attempts=5)

    # THEN the upload is staged
    assert await private_db.status("UPLOAD_ACME_20240101_000003") == "staged"
