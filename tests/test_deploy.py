"""deploy/: every template passes cfn-lint, and the data plane, created through CloudFormation
in the moto server, is what the worker runs against (staging and validation)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml

from tests.conftest import Stack
from worker.resources import Resources
from worker.runtimes.consumer import Consumer
from worker.runtimes.handlers import handle_validation

DEPLOY = Path(__file__).parent.parent / "deploy"
TEMPLATES = sorted(DEPLOY.glob("*.yaml"))
BODY = "vendor_product_id,product_name,category,sku,price,stock_quantity\nP-1,Cup,K,S-1,1.00,3\n"


def test_there_are_templates() -> None:
    assert {t.name for t in TEMPLATES} >= {"ecr.yaml", "data-plane.yaml", "compute.yaml"}


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda path: path.name)
def test_every_template_passes_cfn_lint(template: Path) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), str(template)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


async def test_the_worker_runs_against_the_data_plane_stack(stack: Stack) -> None:
    template = DEPLOY / "data-plane.yaml"
    async with stack.session_client("cloudformation") as cloudformation:
        await cloudformation.create_stack(
            StackName="vendor-onboarding-data-dev",
            TemplateBody=template.read_text(),
            Parameters=[{"ParameterKey": "Environment", "ParameterValue": "dev"}],
        )
        described = await cloudformation.describe_stacks(StackName="vendor-onboarding-data-dev")
    (created,) = described["Stacks"]
    assert created["StackStatus"] == "CREATE_COMPLETE"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in created["Outputs"]}
    bucket = outputs["UploadBucketName"]

    # The moto server ignores a bucket's NotificationConfiguration in a template: apply the
    # template's own through the API.
    notification = cfn_yaml.load(str(template))["Resources"]["UploadBucket"]["Properties"][
        "NotificationConfiguration"
    ]
    async with stack.session_client("s3") as s3:
        await s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    _queue_configuration(item, outputs["IngestQueueArn"])
                    for item in notification["QueueConfigurations"]
                ]
            },
        )
        for key in ("uploads/ACME/ACME_20240101_000001.csv", "elsewhere/ACME_20240101_000002.csv"):
            await s3.put_object(Bucket=bucket, Key=key, Body=BODY.encode())
    await stack.add_vendor("ACME")

    settings = stack.settings.model_copy(
        update={
            "ingest_queue_url": outputs["IngestQueueUrl"],
            "dlq_url": outputs["DeadLetterQueueUrl"],
            "dynamodb_table": outputs["UploadRecordsTableName"],
            "validation_queue_url": outputs["ValidationQueueUrl"],
            "error_queue_url": outputs["ErrorQueueUrl"],
            "notice_topic_arn": outputs["VendorNoticeTopicArn"],
        }
    )
    async with Resources.open(settings) as res:
        await Consumer(res).run(drain=True)
        await Consumer(res, queue_url=outputs["ValidationQueueUrl"], handler=handle_validation).run(
            drain=True
        )

    history = await stack.history("UPLOAD_ACME_20240101_000001")
    assert history is not None
    assert (history["status"], history["s3_bucket"]) == ("validated", bucket)
    assert history["valid_records"] == 1
    async with stack.session_client("s3") as s3:
        report = await s3.head_object(
            Bucket=bucket, Key="reports/ACME/UPLOAD_ACME_20240101_000001.json"
        )
    assert report["ContentType"] == "application/json"
    async with stack.session_client("dynamodb") as dynamodb:
        items = await dynamodb.query(
            TableName=outputs["UploadRecordsTableName"],
            KeyConditionExpression="upload_id = :u",
            ExpressionAttributeValues={":u": {"S": "UPLOAD_ACME_20240101_000001"}},
        )
    assert [item["record_id"]["S"] for item in items["Items"]] == ["REC_00001"]
    # The key outside uploads/ was filtered out by the notification: nothing was recorded.
    assert await stack.db.fetchval("SELECT count(*) FROM upload_history") == 1


def _queue_configuration(item: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    rules = item["Filter"]["S3Key"]["Rules"]
    return {
        "QueueArn": queue_arn,
        "Events": [item["Event"]],
        "Filter": {
            "Key": {"FilterRules": [{"Name": r["Name"], "Value": r["Value"]} for r in rules]}
        },
    }
