"""The vendor's report (JSON summary and CSV of broken rules) to S3, and the notice to SNS."""

from __future__ import annotations

import json
from typing import IO

from botocore.exceptions import BotoCoreError, ClientError

from worker.aws.errors import error_code
from worker.core.errors import TransientError
from worker.core.limits import SNS_MESSAGE_BYTES
from worker.core.report import ReportSummary, report_keys
from worker.resources import Resources


async def put_report(
    res: Resources, bucket: str, summary: ReportSummary, errors_csv: IO[bytes]
) -> None:
    json_key, csv_key = report_keys(summary.vendor_id, summary.upload_id)
    try:
        await res.s3.put_object(
            Bucket=bucket,
            Key=json_key,
            Body=json.dumps(summary.document(), indent=2).encode(),
            ContentType="application/json",
        )
        await res.s3.put_object(
            Bucket=bucket, Key=csv_key, Body=errors_csv.read(), ContentType="text/csv"
        )
    except (ClientError, BotoCoreError) as exc:
        raise TransientError(f"could not write the report: {error_code(exc)}") from exc


def notice_text(summary: ReportSummary) -> str:
    """The notice: the report's summary and where the report is; the sample errors are left
    out (the report has them) when they would not fit in one SNS message."""
    document = {
        **summary.document(),
        "report_key": report_keys(summary.vendor_id, summary.upload_id)[0],
    }
    text = json.dumps(document)
    if len(text.encode()) > SNS_MESSAGE_BYTES:
        document["sample_errors"] = []
        document["sample_errors_omitted"] = True
        text = json.dumps(document)
    return text


async def notify(res: Resources, summary: ReportSummary) -> bool:
    """Publish the vendor notice; False when there is no topic. :class:`TransientError` when
    SNS did not take it (the run is retried, and the notice with it)."""
    topic = res.settings.notice_topic_arn
    if not topic:
        return False
    try:
        await res.sns.publish(
            TopicArn=topic,
            Subject=f"Upload {summary.upload_id}: {summary.valid_records} valid, "
            f"{summary.invalid_records} invalid"[:100],
            Message=notice_text(summary),
            MessageAttributes={
                "vendor_id": {"DataType": "String", "StringValue": summary.vendor_id}
            },
        )
    except (ClientError, BotoCoreError) as exc:
        raise TransientError(f"could not publish the vendor notice: {error_code(exc)}") from exc
    return True
