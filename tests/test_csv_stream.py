"""The streaming reader, fed from an in-memory byte stream in small chunks."""

from decimal import Decimal

import pytest

from worker.core.errors import PermanentError
from worker.core.rows import ProductRow, RowErrors
from worker.ingest.csv_stream import typed_rows

HEADER = "vendor_product_id,product_name,category,sku,price,stock_quantity,description\n"


class Chunks:
    """An S3-body stand-in: serves ``data`` at most ``size`` bytes per read."""

    def __init__(self, data: bytes, size: int = 7) -> None:
        self._data = data
        self._size = size

    async def read(self, amt: int = -1, /) -> bytes:
        piece, self._data = self._data[: self._size], self._data[self._size :]
        return piece


async def parse(data: bytes, chunk: int = 7) -> list[tuple[int, ProductRow | RowErrors]]:
    return [item async for item in typed_rows(Chunks(data, chunk), chunk_bytes=chunk)]


async def test_quoted_commas_quotes_and_newlines_crlf_and_a_bom() -> None:
    text = (
        "\ufeff"
        + HEADER.replace("\n", "\r\n")
        + 'P-1,"Cup, large",Kitchen,S-1,1.50,3,"He said ""hi""\r\nsecond line"\r\n'
        + "P-2,Plate,Kitchen,S-2,2.00,4,\r\n"
    )

    rows = await parse(text.encode())

    assert [number for number, _ in rows] == [1, 2]
    first = rows[0][1]
    assert isinstance(first, ProductRow)
    assert first.vendor_product_id == "P-1"  # the BOM is not part of the first column name
    assert first.product_name == "Cup, large"
    assert first.description == 'He said "hi"\r\nsecond line'
    assert first.price == Decimal("1.50")


async def test_multibyte_characters_split_across_reads() -> None:
    text = HEADER + "P-1,Crème brûlée ☕ 日本,Küche,S-1,1,1,\n"

    rows = await parse(text.encode(), chunk=3)

    assert isinstance(rows[0][1], ProductRow)
    assert rows[0][1].product_name == "Crème brûlée ☕ 日本"


async def test_blank_lines_are_not_rows() -> None:
    rows = await parse((HEADER + "\nP-1,A,C,S,1,1,\n\n\nP-2,B,C,S2,1,1,\n").encode())

    assert [number for number, _ in rows] == [1, 2]


async def test_bad_rows_are_kept_with_their_errors() -> None:
    rows = await parse((HEADER + "P-1,A,C,S,abc,1,\nP-2,B,C,S2,1,1,\n").encode())

    bad = rows[0][1]
    assert isinstance(bad, RowErrors)
    assert bad.errors[0].field == "price"
    assert isinstance(rows[1][1], ProductRow)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"\n\n", "the file is empty"),
        (b"\xef\xbb\xbf", "the file is empty"),
        (HEADER.encode(), "header but no data rows"),
        (b"vendor_product_id,name\nP-1,x\n", "missing required column(s)"),
        ((HEADER + "P-1,A,C,S,1,1,ok\nP-2,Caf\xe9,C,S,1,1,\n").encode("latin-1"), "line 3"),
        (b"\xff\xfe" + HEADER.encode("utf-16-le"), "line 1: the file is not valid UTF-8"),
        (
            (HEADER + 'P-1,A,C,S,1,1,"never closed\nP-2,B,C,S,1,1,ok\n').encode(),
            "line 2: a quoted cell opened on this line is never closed",
        ),
        (
            (HEADER + 'P-1,A,C,S,1,1,ok\nP-2,B,C,S,1,1,"never closed\n' + "x" * 1_100_000).encode(),
            "line 3: a cell is longer than 1,048,576 characters (is a quote left open?)",
        ),
        (
            (
                HEADER + 'P-1,A,C,S,1,1,ok\nP-2,B,C,S,1,1,"closed"then text\nP-3,C,C,S,1,1,\n'
            ).encode(),
            "line 3: the file is not valid CSV",
        ),
    ],
)
async def test_whole_file_problems_reject_the_upload_naming_the_line(
    data: bytes, message: str
) -> None:
    with pytest.raises(PermanentError) as caught:
        await parse(data)

    assert message in str(caught.value)


async def test_a_bad_byte_far_into_the_file_names_its_line() -> None:
    good = "".join(f"P-{n},Name {n},C,S-{n},1.00,1,\n" for n in range(1, 5000))
    data = (HEADER + good).encode() + b"P-x,Caf\xe9,C,S,1,1,\n"

    with pytest.raises(PermanentError, match="line 5001: the file is not valid UTF-8"):
        await parse(data, chunk=4096)


async def test_a_quote_left_open_in_row_2_of_3_rejects_the_file_naming_its_line() -> None:
    data = HEADER + 'P-1,A,C,S-1,1,1,ok\nP-2,"B,C,S-2,1,1,\nP-3,C,C,S-3,1,1,\n'

    with pytest.raises(PermanentError) as caught:
        await parse(data.encode())

    assert str(caught.value) == "line 3: a quoted cell opened on this line is never closed"


async def test_an_error_after_a_multi_line_cell_names_the_line_it_is_on() -> None:
    data = HEADER + 'P-1,A,C,S-1,1,1,"two\nlines"\nP-2,B,C,S-2,1,1,"x"y\n'

    with pytest.raises(PermanentError, match=r"^line 4: the file is not valid CSV"):
        await parse(data.encode())


async def test_a_cell_longer_than_the_parsers_default_limit_is_a_row_error() -> None:
    data = HEADER + "P-1,A,C,S-1,1,1," + "d" * 200_000 + "\nP-2,B,C,S-2,1,1,short\n"

    rows = await parse(data.encode(), chunk=65_536)

    first, second = rows[0][1], rows[1][1]
    assert isinstance(first, RowErrors)
    assert [e.field for e in first.errors] == ["description"]
    assert "200,000 characters long" in first.errors[0].message
    assert isinstance(second, ProductRow)


async def test_a_bad_byte_after_a_bom_names_its_line() -> None:
    data = b"\xef\xbb\xbf" + HEADER.encode() + b"P-1,Caf\xe9,C,S,1,1,\n"

    with pytest.raises(PermanentError, match=r"^line 2: the file is not valid UTF-8"):
        await parse(data, chunk=4096)


async def test_a_header_after_blank_lines_is_named_by_its_own_line() -> None:
    with pytest.raises(PermanentError, match=r"^line 3: missing required column"):
        await parse(b"\n\nvendor_product_id,name\nP-1,x\n")


async def test_a_quote_closed_lines_later_names_where_its_record_starts() -> None:
    data = HEADER + 'P-1,A,C,S-1,1,1,ok\nP-2,"B,C,S-2,1,1,\nP-3,C,C,S-3,1,1,"x"y\n'

    with pytest.raises(PermanentError) as caught:
        await parse(data.encode())

    assert str(caught.value).startswith("line 4: the file is not valid CSV")
    assert str(caught.value).endswith("in the record that starts on line 3")


async def test_a_line_too_long_to_be_a_record_rejects_the_file_before_it_is_parsed() -> None:
    data = HEADER.encode() + b"," * 3_000_000 + b"\n"

    with pytest.raises(PermanentError, match=r"^line 2: the line is longer than 2,097,152"):
        await parse(data, chunk=256 * 1024)
