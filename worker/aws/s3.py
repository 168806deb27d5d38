"""S3 GetObject as a stream of bytes, with S3 and network errors classified once, here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import ClientError as AioHttpError
from botocore.exceptions import BotoCoreError, ClientError

from worker.aws.errors import error_code
from worker.core.errors import PermanentError, TransientError

if TYPE_CHECKING:
    from aiobotocore.response import StreamingBody
    from types_aiobotocore_s3 import S3Client

_GONE = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound"})


class S3Body:
    """The object's bytes; a read that fails midway is a :class:`TransientError`."""

    def __init__(self, body: StreamingBody, uri: str) -> None:
        self._body = body
        self._uri = uri

    async def read(self, amt: int = -1, /) -> bytes:
        try:
            data: bytes = await self._body.read(amt if amt >= 0 else None)
        except (AioHttpError, BotoCoreError, TimeoutError, OSError) as exc:
            raise TransientError(f"reading {self._uri} failed: {type(exc).__name__}") from exc
        return data


@dataclass(frozen=True, slots=True)
class S3Object:
    etag: str
    size: int
    body: S3Body


@asynccontextmanager
async def open_object(client: S3Client, bucket: str, key: str) -> AsyncIterator[S3Object]:
    """GetObject, streamed: the body is read while the block runs and closed when it ends."""
    uri = f"s3://{bucket}/{key}"
    try:
        response = await client.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = error_code(exc)
        if code in _GONE:
            raise PermanentError(f"{uri} no longer exists ({code})") from exc
        raise TransientError(f"S3 GetObject {uri}: {code}") from exc
    except (BotoCoreError, AioHttpError) as exc:
        raise TransientError(f"S3 GetObject {uri}: {type(exc).__name__}: {exc}") from exc
    body = response["Body"]
    async with body:  # releases the connection on every path
        yield S3Object(
            etag=response.get("ETag", "").strip('"'),
            size=response.get("ContentLength", 0),
            body=S3Body(body, uri),
        )
