"""The one place that opens everything: AWS clients and the database pool, on one exit stack."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aioboto3
from aiobotocore.config import AioConfig

from worker import logs
from worker.database import Database, SecretCache
from worker.metrics import MetricsPublisher
from worker.settings import Settings
from worker.wire import send_wire_format

if TYPE_CHECKING:
    from types_aiobotocore_cloudwatch import CloudWatchClient
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_secretsmanager import SecretsManagerClient
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient


USER_AGENT = "vendor-onboarding"


@dataclass(frozen=True, slots=True)
class Runtime:
    """Clients and the pool for the life of a process (or of a warm Lambda container)."""

    settings: Settings
    s3: S3Client
    sqs: SQSClient
    dynamodb: DynamoDBClient
    cloudwatch: CloudWatchClient
    secrets: SecretsManagerClient
    sns: SNSClient
    database: Database
    metrics: MetricsPublisher

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator[Runtime]:
        """Enter every client and the pool; the pool connects eagerly, retrying a few times."""
        logs.withhold_secrets()  # before the first Secrets Manager call, whoever set up logging
        session = aioboto3.Session()
        region, endpoint = settings.aws_region, settings.aws_endpoint_url
        pool_size = settings.files_in_flight * (settings.batches_in_flight + 2)
        config = AioConfig(
            max_pool_connections=pool_size, retries={"mode": "standard", "max_attempts": 4}
        )
        # The staging writer owns retries and backoff for DynamoDB; items are built in the wire
        # format, so botocore's per-item validation and serialisation are skipped.
        dynamodb_config = AioConfig(
            max_pool_connections=pool_size,
            # A fixed User-Agent: botocore otherwise rebuilds it, at some cost, for every call.
            user_agent=USER_AGENT,
            retries={"total_max_attempts": 1},
            parameter_validation=False,
        )
        async with AsyncExitStack() as stack:
            s3 = await stack.enter_async_context(
                session.client("s3", region_name=region, endpoint_url=endpoint, config=config)
            )
            sqs = await stack.enter_async_context(
                session.client("sqs", region_name=region, endpoint_url=endpoint, config=config)
            )
            dynamodb = await stack.enter_async_context(
                session.client(
                    "dynamodb", region_name=region, endpoint_url=endpoint, config=dynamodb_config
                )
            )
            send_wire_format(dynamodb)
            cloudwatch = await stack.enter_async_context(
                session.client(
                    "cloudwatch", region_name=region, endpoint_url=endpoint, config=config
                )
            )
            secrets = await stack.enter_async_context(
                session.client(
                    "secretsmanager", region_name=region, endpoint_url=endpoint, config=config
                )
            )
            sns = await stack.enter_async_context(
                session.client("sns", region_name=region, endpoint_url=endpoint, config=config)
            )
            cache = SecretCache(secrets, settings.rds_secret_name, settings.secret_ttl_seconds)
            database = await stack.enter_async_context(
                Database.open(
                    cache, max_size=settings.db_pool_max_size, attempts=settings.startup_attempts
                )
            )
            metrics = await stack.enter_async_context(
                MetricsPublisher(
                    cloudwatch,
                    settings.metrics_namespace,
                    interval=settings.metrics_interval_seconds,
                    enabled=settings.metrics_enabled,
                )
            )
            yield cls(settings, s3, sqs, dynamodb, cloudwatch, secrets, sns, database, metrics)
