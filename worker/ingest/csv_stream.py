"""An S3 object body → typed rows, streamed: memory does not grow with the file.

Bytes are decoded incrementally (UTF-8, an optional BOM), fed to aiocsv's C parser, and each
row is typed against the header. Quoting is strict (RFC 4180): a byte that is not UTF-8, a
quote left open or text after a closing quote rejects the whole upload, naming the line; a
problem inside one row (a long cell, a control character) is that row's error.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import AsyncIterator
from typing import Protocol

from aiocsv import AsyncReader

from worker.core.errors import PermanentError
from worker.core.limits import MAX_FIELD_CHARS, MAX_LINE_CHARS
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
        self._line_chars = 0  # characters since the last line break
        self._done = False

    async def read(self, size: int = -1) -> str:
        # aiocsv takes whatever length comes back; bigger reads mean fewer round trips.
        while not self._done:
            chunk = await self._body.read(self._chunk_bytes)
            final = not chunk
            try:
                text = self._decoder.decode(chunk, final=final)
            except UnicodeDecodeError as exc:
                # exc.object is what the decoder was decoding: bytes held back from the last
                # chunk and this one, without a BOM; exc.start counts within it.
                line = self._newlines + exc.object[: exc.start].count(b"\n") + 1
                raise PermanentError(
                    f"line {line}: the file is not valid UTF-8 "
                    f"(byte 0x{exc.object[exc.start]:02x} cannot be decoded); save it as UTF-8"
                ) from None
            self._check_line_length(text)
            self._newlines += chunk.count(b"\n")
            self._done = final
            if text:
                return text
        return ""

    def _check_line_length(self, text: str) -> None:
        """The CSV parser holds a whole record: a line too long to be one (a file of commas, a
        binary blob) rejects the file before it can fill the memory."""
        first = text.find("\n")
        if first < 0:
            self._line_chars += len(text)
        elif self._line_chars + first <= MAX_LINE_CHARS:
            # Every later line of this text is shorter than the text (a chunk) itself.
            self._line_chars = len(text) - text.rfind("\n") - 1
            return
        else:
            self._line_chars += first
        if self._line_chars > MAX_LINE_CHARS:
            raise PermanentError(
                f"line {self._newlines + 1}: the line is longer than {MAX_LINE_CHARS:,} "
                "characters; is this a CSV file?"
            )


async def typed_rows(
    body: ByteStream, chunk_bytes: int = 256 * 1024
) -> AsyncIterator[tuple[int, ProductRow | RowErrors]]:
    """Yield ``(row_number, typed row or its errors)`` for every data row of a CSV body.

    Raises :class:`PermanentError` for an empty file, a bad header, a file with no data rows,
    undecodable bytes or broken CSV quoting, naming the line.
    """
    # aiocsv reads the limit when a reader is made; the default (131,072) would reject a whole
    # file for one long cell, which is a row error up to MAX_FIELD_CHARS.
    csv.field_size_limit(MAX_FIELD_CHARS)
    reader = AsyncReader(DecodedText(body, chunk_bytes), strict=True)
    record_line = 1  # the line the record being read starts on
    columns: Header | None = None
    row_number = 0
    try:
        async for cells in reader:
            if columns is None:
                if any(cell.strip() for cell in cells):  # blank lines before it are skipped
                    columns = Header.parse(cells, line=record_line)
            elif cells and (len(cells) > 1 or cells[0].strip()):  # a blank line is not a row
                row_number += 1
                yield row_number, columns.type_row(cells)
            record_line = reader.line_num + 1
    except csv.Error as exc:
        raise PermanentError(_csv_problem(exc, record_line, reader.line_num)) from None
    if columns is None:
        raise PermanentError("the file is empty")
    if row_number == 0:
        raise PermanentError("the file has a header but no data rows")


def _csv_problem(exc: csv.Error, record_line: int, lines_read: int) -> str:
    text = str(exc)
    if "unexpected end of data" in text:
        return f"line {record_line}: a quoted cell opened on this line is never closed"
    if "field larger than field limit" in text:
        return (
            f"line {record_line}: a cell is longer than {MAX_FIELD_CHARS:,} characters "
            "(is a quote left open?)"
        )
    # Raised inside a line: the lines read so far end before it.
    line = lines_read + 1
    where = f" in the record that starts on line {record_line}" if record_line < line else ""
    return f"line {line}: the file is not valid CSV ({text}){where}"
