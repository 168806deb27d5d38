"""Session-scoped servers (a moto server over HTTP, a real PostgreSQL) and per-test stacks.

PostgreSQL: ``TEST_DATABASE_URL`` when set, else an embedded server started here. Each session
works in a database of its own, dropped at the end; each test starts from empty tables and a
freshly reset moto server with the stack provisioned anew.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import secrets
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aioboto3
import asyncpg
import pytest
from boto3.dynamodb.types import TypeDeserializer

from worker.local.provision import (
    StackNames,
    connect,
    prepare_database,
    provision_aws,
    stack_settings,
)
from worker.local.servers import EmbeddedPostgres, MotoServer, credentials_from_url
from worker.postgres.database import DatabaseCredentials
from worker.resources import Resources
from worker.runtimes.consumer import Consumer
from worker.settings import Settings

REGION = "us-east-1"
CANARY_PASSWORD = f"canary-{secrets.token_hex(8)}"
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION=REGION,
)
for _name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "INGEST_QUEUE_URL", "DLQ_URL"):
    os.environ.pop(_name, None)


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    yield server.start()
    server.stop()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseCredentials]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield credentials_from_url(url)
        return
    embedded = EmbeddedPostgres(tmp_path_factory.mktemp("postgres"))
    yield embedded.start()
    embedded.stop()


@pytest.fixture(scope="session")
async def db_credentials(pg_server: DatabaseCredentials) -> AsyncIterator[DatabaseCredentials]:
    name = f"vo_test_{secrets.token_hex(4)}"
    credentials = await prepare_database(pg_server, name, vendors=False)
    yield credentials
    await _drop_database(pg_server, name)


@pytest.fixture
async def scratch_database(pg_server: DatabaseCredentials) -> AsyncIterator[str]:
    """The name of a database that does not exist yet on the test server; dropped after the
    test (for commands that create their own, such as ``local up``)."""
    name = f"vo_scratch_{secrets.token_hex(4)}"
    yield name
    await _drop_database(pg_server, name)


async def _drop_database(server: DatabaseCredentials, name: str) -> None:
    admin = await connect(server)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def db(db_credentials: DatabaseCredentials) -> AsyncIterator[asyncpg.Connection]:
    """A connection for the tests' own checks and set-up."""
    conn = await connect(db_credentials)
    yield conn
    await conn.close()


@pytest.fixture(autouse=True)
def fail_on_unhandled_loop_errors() -> Iterator[None]:
    """A test fails if the event loop logged an exception nobody retrieved."""
    loop = asyncio.get_event_loop_policy().get_event_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield
    loop.set_exception_handler(previous)
    assert not errors, f"unhandled errors in the event loop: {errors}"


@dataclass(frozen=True)
class Stack:
    """The resources one test works against."""

    settings: Settings
    names: StackNames
    credentials: DatabaseCredentials
    db: asyncpg.Connection

    @property
    def bucket(self) -> str:
        return self.names.bucket

    def session_client(self, service: str) -> Any:
        return aioboto3.Session().client(
            service, endpoint_url=self.settings.aws_endpoint_url, region_name=REGION
        )

    async def put_object(self, key: str, body: bytes | str) -> None:
        data = body.encode() if isinstance(body, str) else body
        async with self.session_client("s3") as s3:
            await s3.put_object(Bucket=self.bucket, Key=key, Body=data)

    async def add_vendor(self, vendor_id: str, status: str = "active") -> None:
        await self.db.execute(
            """INSERT INTO vendors (vendor_id, name, email, status) VALUES ($1, $2, $3, $4)
               ON CONFLICT (vendor_id) DO UPDATE SET status = EXCLUDED.status""",
            vendor_id,
            f"{vendor_id} Ltd",
            f"ops@{vendor_id.lower()}.example",
            status,
        )

    async def run_worker(self, **overrides: Any) -> None:
        """Run the worker in --drain mode until the queue is empty."""
        settings = self.settings.model_copy(update=overrides)
        async with Resources.open(settings) as res:
            await asyncio.wait_for(Consumer(res).run(drain=True), timeout=60)

    async def run_validation(self, **overrides: Any) -> None:
        """Run the validation stage's loop in --drain mode until its queue is empty."""
        settings = self.settings.model_copy(update=overrides)
        async with Resources.open(settings) as res:
            consumer = Consumer(res, stage="validation")
            await asyncio.wait_for(consumer.run(drain=True), timeout=60)

    async def history(self, upload_id: str) -> dict[str, Any] | None:
        row = await self.db.fetchrow("SELECT * FROM upload_history WHERE upload_id = $1", upload_id)
        return dict(row) if row is not None else None

    async def items(self, upload_id: str) -> list[dict[str, Any]]:
        """Every staging item of an upload, decoded, in row order."""
        deserializer = TypeDeserializer()
        items: list[dict[str, Any]] = []
        async with self.session_client("dynamodb") as dynamodb:
            paginator = dynamodb.get_paginator("query")
            async for page in paginator.paginate(
                TableName=self.settings.dynamodb_table,
                KeyConditionExpression="upload_id = :u",
                ExpressionAttributeValues={":u": {"S": upload_id}},
            ):
                items.extend(
                    {k: deserializer.deserialize(v) for k, v in item.items()}
                    for item in page["Items"]
                )
        return sorted(items, key=lambda item: item["row_number"])

    async def queue_messages(self, queue_url: str) -> list[dict[str, Any]]:
        """Receive (without deleting) what is visible in a queue."""
        async with self.session_client("sqs") as sqs:
            response = await sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                VisibilityTimeout=0,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
            )
        return list(response.get("Messages", []))

    async def send_raw(self, body: str) -> None:
        async with self.session_client("sqs") as sqs:
            await sqs.send_message(QueueUrl=self.settings.ingest_queue_url, MessageBody=body)


def _reset_moto(endpoint: str) -> None:
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass


@pytest.fixture
async def stack(
    moto_endpoint: str, db_credentials: DatabaseCredentials, db: asyncpg.Connection
) -> Stack:
    _reset_moto(moto_endpoint)
    await db.execute("TRUNCATE upload_history, products, vendors")
    names = StackNames()
    # The test servers trust local connections, so the secret's password is never checked:
    # it is a canary that tests look for in logs and errors.
    secret = dataclasses.replace(db_credentials, password=CANARY_PASSWORD)
    queues = await provision_aws(moto_endpoint, REGION, names, secret)
    settings = stack_settings(
        moto_endpoint,
        REGION,
        names,
        queues,
        visibility_timeout_seconds=300,
        receive_wait_seconds=0,
        startup_attempts=1,
    )
    stack = Stack(settings, names, db_credentials, db)
    # Configuring the notification sends an s3:TestEvent; most tests start from an empty queue.
    await _purge(stack, queues.ingest)
    return stack


async def _purge(stack: Stack, queue_url: str) -> None:
    async with stack.session_client("sqs") as sqs:
        await sqs.purge_queue(QueueUrl=queue_url)


FIXTURES = Path(__file__).parent / "fixtures"


async def eventually(condition: Callable[[], Awaitable[bool]], *, within: float, what: str) -> None:
    """Poll ``condition`` until it holds, failing after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def s3_event(bucket: str, *keys: str, encoded: bool = True) -> str:
    """An S3 ObjectCreated notification body naming ``keys`` (URL-encoded like S3 does)."""
    from urllib.parse import quote_plus

    return json.dumps(
        {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "s3": {
                        "bucket": {"name": bucket},
                        "object": {"key": quote_plus(key) if encoded else key, "size": 1},
                    },
                }
                for key in keys
            ]
        }
    )
