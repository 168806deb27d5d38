"""The one place that opens everything: AWS clients and the database pool, on one exit stack.

Stages take a :class:`Resources` and never build a client of their own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, NoRegionError

from worker import logs
from worker.aws.metrics import MetricsPublisher
from worker.aws.wire import send_wire_format
from worker.core.errors import ConfigurationError
from worker.postgres.database import Database, SecretCache, database_tls
from worker.settings import Settings

if TYPE_CHECKING:
    from types_aiobotocore_cloudwatch import CloudWatchClient
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_secretsmanager import SecretsManagerClient
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient


USER_AGENT = "vendor-onboarding"

NO_CREDENTIALS = (
    "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or AWS_PROFILE, "
    "or run with a task or instance role"
)
NO_REGION = "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or a region in the profile)"


async def aws_session() -> aioboto3.Session:
    """A session whose credentials were found: without any, every call would fail after its
    retries, so their absence is a :class:`ConfigurationError` at once."""
    session = aioboto3.Session()
    try:
        credentials = await session.get_credentials()  # type: ignore[misc]
    except BotoCoreError as exc:  # a profile that does not exist, a failing credential_process
        raise ConfigurationError(f"AWS credentials: {exc}") from None
    if credentials is None:
        raise ConfigurationError(NO_CREDENTIALS)
    return session


async def enter_client(
    stack: AsyncExitStack,
    session: aioboto3.Session,
    settings: Settings,
    service: str,
    config: AioConfig | None = None,
) -> Any:
    """A client on ``stack``. The region and endpoint are passed only when the settings name
    them; otherwise botocore resolves them (AWS_DEFAULT_REGION or the profile; AWS_ENDPOINT_URL
    and AWS_ENDPOINT_URL_<SERVICE>)."""
    try:
        return await stack.enter_async_context(
            session.client(
                service,  # type: ignore[call-overload]
                region_name=settings.aws_region,
                endpoint_url=settings.aws_endpoint_url,
                config=config,
            )
        )
    except NoRegionError:
        raise ConfigurationError(NO_REGION) from None


def _database(settings: Settings, secrets: SecretsManagerClient, attempts: int) -> Any:
    """The pool (an async context manager), its secret read with ``secrets``."""
    cache = SecretCache(secrets, settings.rds_secret_name, settings.secret_ttl_seconds)
    return Database.open(
        cache,
        max_size=settings.db_pool_max_size,
        attempts=attempts,
        tls=database_tls(settings.database_ssl_mode, settings.database_ssl_root_cert),
    )


@asynccontextmanager
async def open_database(settings: Settings, *, attempts: int = 1) -> AsyncIterator[Database]:
    """The pool alone (and the Secrets Manager client its secret is read with), for a command
    that only looks something up in the database."""
    session = await aws_session()
    async with AsyncExitStack() as stack:
        secrets = await enter_client(stack, session, settings, "secretsmanager")
        yield await stack.enter_async_context(_database(settings, secrets, attempts))


@asynccontextmanager
async def open_sqs(settings: Settings) -> AsyncIterator[SQSClient]:
    """An SQS client alone, for the operator commands that only look at or move messages
    (``dlq peek``, ``dlq redrive``): they need AWS access, not the database."""
    session = await aws_session()
    async with AsyncExitStack() as stack:
        yield await enter_client(stack, session, settings, "sqs")


@dataclass(frozen=True, slots=True)
class Resources:
    """Clients and the pool for the life of a process (or of a warm Lambda container)."""

    settings: Settings
    s3: S3Client
    sqs: SQSClient
    dynamodb: DynamoDBClient
    # A DynamoDB client that sends BatchWriteItem only, its items as the wire format they are
    # built in (worker.aws.wire); every other call goes through ``dynamodb``.
    item_writes: DynamoDBClient
    cloudwatch: CloudWatchClient
    secrets: SecretsManagerClient
    sns: SNSClient
    database: Database
    metrics: MetricsPublisher

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator[Resources]:
        """Enter every client and the pool; the pool connects eagerly, retrying a few times."""
        logs.withhold_secrets()  # before the first Secrets Manager call, whoever set up logging
        session = await aws_session()
        writes_in_flight = settings.files_in_flight * settings.batches_in_flight
        config = AioConfig(
            max_pool_connections=settings.files_in_flight * 2 + 10,
            retries={"mode": "standard", "max_attempts": 4},
        )
        # The item writer owns retries and backoff; its parameters are checked when the items
        # are built, so botocore's per-attribute validation and serialisation are skipped.
        item_writes_config = AioConfig(
            max_pool_connections=writes_in_flight + 2,
            # A fixed User-Agent: botocore otherwise rebuilds it, at some cost, for every call.
            user_agent=USER_AGENT,
            retries={"total_max_attempts": 1},
            parameter_validation=False,
        )
        async with AsyncExitStack() as stack:

            async def client(service: str, client_config: AioConfig = config) -> Any:
                return await enter_client(stack, session, settings, service, client_config)

            item_writes = await client("dynamodb", item_writes_config)
            send_wire_format(item_writes)
            secrets = await client("secretsmanager")
            cloudwatch = await client("cloudwatch")
            database = await stack.enter_async_context(
                _database(settings, secrets, settings.startup_attempts)
            )
            metrics = await stack.enter_async_context(
                MetricsPublisher(
                    cloudwatch,
                    settings.metrics_namespace,
                    interval=settings.metrics_interval_seconds,
                    enabled=settings.metrics_enabled,
                )
            )
            yield cls(
                settings,
                s3=await client("s3"),
                sqs=await client("sqs"),
                dynamodb=await client("dynamodb"),
                item_writes=item_writes,
                cloudwatch=cloudwatch,
                secrets=secrets,
                sns=await client("sns"),
                database=database,
                metrics=metrics,
            )
