"""An S3 object body → typed rows, streamed: memory does not grow with the file.

Bytes are decoded incrementally (UTF-8, an optional BOM), fed to aiocsv's C parser, and each
row is typed against the header. A byte that is not UTF-8, a NUL or an unterminated quote rejects
the whole upload with the line it is on.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import AsyncIterator
from typing import Protocol

from aiocsv import AsyncReader

from worker.core.errors import PermanentError
from worker.core.rows import Header, ProductRow, RowErrors


class ByteStream(Protocol):
    async def read(self, amt: int = ..., /) -> bytes: ...


class DecodedText:
    """An async text file over a byte stream, as aiocsv expects (``async read(size)``)."""

    def __init__(self, body: ByteStream, chunk_bytes: int) -> None:
        self._body = body
        self._chunk_bytes = chunk_bytes
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")
        self._newlines = 0  # newlines in the bytes decoded so far
        self._done = False

    async def read(self, size: int = -1) -> str:
        # aiocsv takes whatever length comes back; bigger reads mean fewer round trips.
        while not self._done:
            chunk = await self._body.read(self._chunk_bytes)
            final = not chunk
            try:
                text = self._decoder.decode(chunk, final=final)
            except UnicodeDecodeError as exc:
                pending = len(self._decoder.getstate()[0])
                line = self._newlines + chunk[: max(0, exc.start - pending)].count(b"\n") + 1
                raise PermanentError(
                    f"line {line}: the file is not valid UTF-8 "
                    f"(byte 0x{exc.object[exc.start]:02x} cannot be decoded); save it as UTF-8"
                ) from None
            self._newlines += chunk.count(b"\n")
            self._done = final
            if text:
                return text
        return ""


async def typed_rows(
    body: ByteStream, chunk_bytes: int = 256 * 1024
) -> AsyncIterator[tuple[int, ProductRow | RowErrors]]:
    """Yield ``(row_number, typed row or its errors)`` for every data row of a CSV body.

    Raises :class:`PermanentError` for an empty file, a bad header, a file with no data rows,
    undecodable bytes or broken CSV quoting.
    """
    reader = AsyncReader(DecodedText(body, chunk_bytes))
    rows = aiter(reader)
    try:
        header = await _first_row(rows)
        if header is None:
            raise PermanentError("the file is empty")
        columns = Header.parse(header)
        row_number = 0
        async for cells in rows:
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue  # a blank line is not a row
            row_number += 1
            yield row_number, columns.type_row(cells)
    except csv.Error as exc:
        raise PermanentError(f"line {reader.line_num}: the file is not valid CSV ({exc})") from None
    if row_number == 0:
        raise PermanentError("the file has a header but no data rows")


async def _first_row(rows: AsyncIterator[list[str]]) -> list[str] | None:
    async for cells in rows:
        if cells and any(cell.strip() for cell in cells):
            return cells
    return None
