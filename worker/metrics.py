"""CloudWatch metrics for a staged upload (design §2 "Metrics"), dimension ``VendorId``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from types_aiobotocore_cloudwatch import CloudWatchClient
    from types_aiobotocore_cloudwatch.literals import StandardUnitType
    from types_aiobotocore_cloudwatch.type_defs import DimensionTypeDef

log = logging.getLogger(__name__)


async def publish_upload_metrics(
    client: CloudWatchClient,
    namespace: str,
    *,
    vendor_id: str,
    total: int,
    successful: int,
    failed: int,
    seconds: float,
) -> bool:
    """Publish the counts of one upload; a failure is logged, never raised: metrics are not
    worth failing an upload whose rows are already staged."""
    dimensions: list[DimensionTypeDef] = [{"Name": "VendorId", "Value": vendor_id}]
    data: list[tuple[str, float, StandardUnitType]] = [
        ("CSVRecordsProcessed", float(total), "Count"),
        ("CSVRecordsSuccessful", float(successful), "Count"),
        ("CSVRecordsFailed", float(failed), "Count"),
        ("CSVProcessingTime", seconds, "Seconds"),
    ]
    try:
        await client.put_metric_data(
            Namespace=namespace,
            MetricData=[
                {"MetricName": name, "Value": value, "Unit": unit, "Dimensions": dimensions}
                for name, value, unit in data
            ],
        )
    except (ClientError, BotoCoreError) as exc:
        log.warning("could not publish metrics", extra={"error": str(exc)})
        return False
    return True
