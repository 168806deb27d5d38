"""Create the stack's resources, as deploy/ does in AWS: bucket with its S3→SQS notification,
the ingest and validation queues, each with its own DLQ and redrive policy, the staging table
with its GSIs and stream, the database secret, the schema and a few vendors. Every step is
idempotent."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aioboto3
import asyncpg
from botocore.exceptions import ClientError

from worker.postgres import migrations
from worker.postgres.database import DatabaseCredentials
from worker.settings import Settings

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_secretsmanager import SecretsManagerClient
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient

# The vendors a fresh local stack knows; INITECH is suspended.
DEMO_VENDORS = (
    ("ACME", "Acme Supplies", "ops@acme.example", "active"),
    ("GLOBEX", "Globex Trading", "catalogue@globex.example", "active"),
    ("INITECH", "Initech Retail", "vendor@initech.example", "suspended"),
)


@dataclass(frozen=True)
class StackNames:
    bucket: str = "vendor-uploads-local"
    ingest_queue: str = "vendor-onboarding-ingest"
    dlq: str = "vendor-onboarding-ingest-dlq"
    validation_queue: str = "vendor-onboarding-validation"
    validation_dlq: str = "vendor-onboarding-validation-dlq"
    error_queue: str = "vendor-onboarding-invalid-rows"
    notice_topic: str = "vendor-onboarding-notices"
    table: str = "UploadRecords"
    secret: str = "ecommerce/rds/credentials"
    max_receive_count: int = 3
    visibility_timeout: int = 300


@dataclass(frozen=True)
class QueueUrls:
    ingest: str
    dlq: str
    validation: str
    errors: str
    notice_topic: str
    validation_dlq: str


def stack_settings(
    endpoint_url: str, region: str, names: StackNames, queues: QueueUrls, **overrides: Any
) -> Settings:
    """The settings of a worker that runs against a provisioned stack."""
    values: dict[str, Any] = {
        "aws_region": region,
        "aws_endpoint_url": endpoint_url,
        "ingest_queue_url": queues.ingest,
        "dlq_url": queues.dlq,
        "validation_queue_url": queues.validation,
        "validation_dlq_url": queues.validation_dlq,
        "error_queue_url": queues.errors,
        "notice_topic_arn": queues.notice_topic,
        "dynamodb_table": names.table,
        "rds_secret_name": names.secret,
        "visibility_timeout_seconds": names.visibility_timeout,
        # A local PostgreSQL: TLS when it offers it, nothing verified.
        "database_ssl_mode": "prefer",
    }
    return Settings(**(values | overrides))


async def provision_aws(
    endpoint_url: str, region: str, names: StackNames, credentials: DatabaseCredentials
) -> QueueUrls:
    session = aioboto3.Session()
    async with (
        session.client("s3", endpoint_url=endpoint_url, region_name=region) as s3,
        session.client("sqs", endpoint_url=endpoint_url, region_name=region) as sqs,
        session.client("dynamodb", endpoint_url=endpoint_url, region_name=region) as dynamodb,
        session.client("secretsmanager", endpoint_url=endpoint_url, region_name=region) as secrets,
        session.client("sns", endpoint_url=endpoint_url, region_name=region) as sns,
    ):
        queues = await create_queues(sqs, sns, names)
        await create_bucket(s3, sqs, names, queues.ingest)
        await create_table(dynamodb, names.table)
        await put_secret(secrets, names.secret, credentials)
    return queues


async def create_queues(sqs: SQSClient, sns: SNSClient, names: StackNames) -> QueueUrls:
    dlq_url, ingest_redrive = await create_dlq(sqs, names.dlq, names.max_receive_count)
    ingest_url = (
        await sqs.create_queue(
            QueueName=names.ingest_queue,
            Attributes={
                "VisibilityTimeout": str(names.visibility_timeout),
                "MessageRetentionPeriod": str(4 * 24 * 3600),
                "RedrivePolicy": ingest_redrive,
            },
        )
    )["QueueUrl"]
    validation_dlq_url, validation_redrive = await create_dlq(
        sqs, names.validation_dlq, names.max_receive_count
    )
    validation_url = (
        await sqs.create_queue(
            QueueName=names.validation_queue,
            Attributes={
                "VisibilityTimeout": str(names.visibility_timeout),
                "RedrivePolicy": validation_redrive,
            },
        )
    )["QueueUrl"]
    errors_url = (
        await sqs.create_queue(
            QueueName=names.error_queue,
            Attributes={"MessageRetentionPeriod": str(14 * 24 * 3600)},
        )
    )["QueueUrl"]
    topic_arn = (await sns.create_topic(Name=names.notice_topic))["TopicArn"]
    return QueueUrls(ingest_url, dlq_url, validation_url, errors_url, topic_arn, validation_dlq_url)


async def create_dlq(sqs: SQSClient, name: str, max_receive_count: int) -> tuple[str, str]:
    """A DLQ, and the RedrivePolicy that sends a queue's messages to it."""
    url = (
        await sqs.create_queue(
            QueueName=name, Attributes={"MessageRetentionPeriod": str(14 * 24 * 3600)}
        )
    )["QueueUrl"]
    arn = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]))["Attributes"][
        "QueueArn"
    ]
    return url, json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": str(max_receive_count)})


async def create_bucket(s3: S3Client, sqs: SQSClient, names: StackNames, queue_url: str) -> None:
    try:
        await s3.create_bucket(Bucket=names.bucket)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "BucketAlreadyOwnedByYou":
            raise
    queue_arn = (await sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"]))[
        "Attributes"
    ]["QueueArn"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{names.bucket}"}},
            }
        ],
    }
    await sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
    await s3.put_bucket_notification_configuration(
        Bucket=names.bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {
                        "Key": {
                            "FilterRules": [
                                {"Name": "prefix", "Value": "uploads/"},
                                {"Name": "suffix", "Value": ".csv"},
                            ]
                        }
                    },
                }
            ]
        },
    )


async def create_table(dynamodb: DynamoDBClient, table: str) -> None:
    try:
        await dynamodb.create_table(
            TableName=table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": "upload_id", "AttributeType": "S"},
                {"AttributeName": "record_id", "AttributeType": "S"},
                {"AttributeName": "vendor_id", "AttributeType": "S"},
                {"AttributeName": "status", "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": "upload_id", "KeyType": "HASH"},
                {"AttributeName": "record_id", "KeyType": "RANGE"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "VendorIndex",
                    "KeySchema": [
                        {"AttributeName": "vendor_id", "KeyType": "HASH"},
                        {"AttributeName": "upload_id", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                },
                {
                    "IndexName": "StatusIndex",
                    "KeySchema": [
                        {"AttributeName": "upload_id", "KeyType": "HASH"},
                        {"AttributeName": "status", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                },
            ],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceInUseException":
            raise


async def put_secret(
    secrets: SecretsManagerClient, name: str, credentials: DatabaseCredentials
) -> None:
    value = json.dumps(
        {
            "username": credentials.username,
            "password": credentials.password,
            "host": credentials.host,
            "port": credentials.port,
            "dbname": credentials.dbname,
        }
    )
    try:
        await secrets.create_secret(Name=name, SecretString=value)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceExistsException":
            raise
        await secrets.put_secret_value(SecretId=name, SecretString=value)


async def prepare_database(
    credentials: DatabaseCredentials, dbname: str, *, vendors: bool = True
) -> DatabaseCredentials:
    """Create ``dbname`` on the server if needed, migrate it and seed the demo vendors.

    The database is created from the one ``credentials`` name, or from ``postgres`` when that
    is ``dbname`` itself (which may not exist yet)."""
    maintenance = credentials.dbname if credentials.dbname != dbname else "postgres"
    admin = await connect(dataclasses.replace(credentials, dbname=maintenance))
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", dbname)
        if not exists:
            await admin.execute(f'CREATE DATABASE "{dbname}"')
    finally:
        await admin.close()
    target = dataclasses.replace(credentials, dbname=dbname)
    conn = await connect(target)
    try:
        await migrations.apply(conn)
        if vendors:
            await conn.executemany(
                """INSERT INTO vendors (vendor_id, name, email, status) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (vendor_id) DO UPDATE SET status = EXCLUDED.status""",
                DEMO_VENDORS,
            )
    finally:
        await conn.close()
    return target


async def connect(credentials: DatabaseCredentials) -> asyncpg.Connection:
    return await asyncpg.connect(**credentials.connect_args())
