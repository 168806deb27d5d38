"""CloudWatch metrics of staged uploads (design §2 "Metrics"), dimension ``VendorId``.

Figures are collected per vendor and published together, every ``interval`` seconds and when
the publisher closes (or when asked: the Lambda handler flushes at the end of an invocation),
so a busy worker makes one PutMetricData call where it would make one per file. Publishing
never fails an upload: its rows are staged already.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from worker.core.background import Background

if TYPE_CHECKING:
    from types_aiobotocore_cloudwatch import CloudWatchClient
    from types_aiobotocore_cloudwatch.type_defs import DimensionTypeDef, MetricDatumTypeDef

log = logging.getLogger(__name__)

MAX_DATUMS_PER_CALL = 1000


@dataclass
class _VendorFigures:
    total: int = 0
    successful: int = 0
    failed: int = 0
    seconds: list[float] = field(default_factory=list)
    throttled: int = 0


class MetricsPublisher(Background):
    def __init__(
        self, client: CloudWatchClient, namespace: str, *, interval: float, enabled: bool = True
    ) -> None:
        self._client = client
        self._namespace = namespace
        self._interval = interval
        self._enabled = enabled
        self._pending: defaultdict[str, _VendorFigures] = defaultdict(_VendorFigures)

    def record(
        self, *, vendor_id: str, total: int, successful: int, failed: int, seconds: float
    ) -> None:
        if not self._enabled:
            return
        figures = self._pending[vendor_id]
        figures.total += total
        figures.successful += successful
        figures.failed += failed
        figures.seconds.append(seconds)

    def record_throttled(self, vendor_id: str, items: int) -> None:
        """Items DynamoDB turned back (throttles, UnprocessedItems) while staging a file."""
        if self._enabled and items:
            self._pending[vendor_id].throttled += items

    async def flush(self) -> bool:
        """Publish what was recorded since the last flush; False if CloudWatch refused."""
        pending, self._pending = self._pending, defaultdict(_VendorFigures)
        data = [datum for vendor, f in pending.items() for datum in _datums(vendor, f)]
        try:
            for start in range(0, len(data), MAX_DATUMS_PER_CALL):
                await self._client.put_metric_data(
                    Namespace=self._namespace, MetricData=data[start : start + MAX_DATUMS_PER_CALL]
                )
        except (ClientError, BotoCoreError) as exc:
            log.warning("could not publish metrics", extra={"error": str(exc)})
            return False
        return True

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await super().__aexit__(exc_type, exc, tb)
        await self.flush()

    async def _background(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()


def _datums(vendor_id: str, figures: _VendorFigures) -> list[MetricDatumTypeDef]:
    dimensions: list[DimensionTypeDef] = [{"Name": "VendorId", "Value": vendor_id}]
    throttled: list[MetricDatumTypeDef] = [
        {
            "MetricName": "StagingItemsThrottled",
            "Value": figures.throttled,
            "Unit": "Count",
            "Dimensions": dimensions,
        }
    ]
    seconds = figures.seconds
    if not seconds:  # no file finished: only the throttles to report
        return throttled
    return [
        *throttled,
        {
            "MetricName": "CSVRecordsProcessed",
            "Value": figures.total,
            "Unit": "Count",
            "Dimensions": dimensions,
        },
        {
            "MetricName": "CSVRecordsSuccessful",
            "Value": figures.successful,
            "Unit": "Count",
            "Dimensions": dimensions,
        },
        {
            "MetricName": "CSVRecordsFailed",
            "Value": figures.failed,
            "Unit": "Count",
            "Dimensions": dimensions,
        },
        {
            "MetricName": "CSVProcessingTime",
            "StatisticValues": {
                "SampleCount": len(seconds),
                "Sum": sum(seconds),
                "Minimum": min(seconds),
                "Maximum": max(seconds),
            },
            "Unit": "Seconds",
            "Dimensions": dimensions,
        },
    ]
