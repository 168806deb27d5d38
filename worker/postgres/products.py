"""The ``products`` table: every SQL statement on it. Written only by the validation stage.

The newest upload wins: a product remembers the key timestamp of the upload it came from
(``source_timestamp``), and only a row from an upload at least as new replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from worker.core.errors import TransientError
from worker.core.rows import COLUMNS

# The products table's columns, in the order the records passed to ``upsert`` are built.
PRODUCT_COLUMNS = ("vendor_id", *COLUMNS, "extra", "upload_id", "source_timestamp")
_UPDATED = PRODUCT_COLUMNS[2:]
_UPSERT = f"""
INSERT INTO products ({", ".join(PRODUCT_COLUMNS)}, updated_at)
SELECT {", ".join(PRODUCT_COLUMNS)}, now() FROM staged_products
ORDER BY vendor_product_id  -- rows locked in one order: concurrent uploads do not deadlock
ON CONFLICT (vendor_id, vendor_product_id) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in _UPDATED)}, updated_at = now()
WHERE (products.source_timestamp IS NULL
       OR products.source_timestamp <= EXCLUDED.source_timestamp)
  AND ({", ".join(f"products.{c}" for c in _UPDATED)})
      IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in _UPDATED)})
"""
_SUPERSEDED = """
SELECT s.vendor_product_id, p.upload_id FROM staged_products s
JOIN products p USING (vendor_id, vendor_product_id)
WHERE p.source_timestamp > s.source_timestamp
"""
# What PostgreSQL refuses in a row's values (a NUL character, a number too large for its
# column): that row is invalid; the others are stored.
# (asyncpg's own DataError: a value it cannot encode for the column.)
_ROW_REFUSED = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.exceptions._base.DataError,
)


@dataclass
class Upserted:
    # vendor_product_id → the newer upload whose product stands instead of this row's.
    superseded: dict[str, str] = field(default_factory=dict)
    # Index of a refused record → PostgreSQL's reason.
    refused: dict[int, str] = field(default_factory=dict)


async def upsert_products(conn: asyncpg.Connection, records: list[tuple[Any, ...]]) -> Upserted:
    """Insert or update products, inside the caller's transaction: COPY into a temporary table,
    then one ``INSERT ... ON CONFLICT DO UPDATE``. Unchanged products are not rewritten, and a
    product from a newer upload is not replaced (the row is *superseded*). When PostgreSQL
    refuses a value, the records are upserted one by one and the refused ones left out."""
    if not conn.is_in_transaction():
        raise RuntimeError("upsert_products runs inside a transaction")
    await conn.execute(
        "CREATE TEMPORARY TABLE IF NOT EXISTS staged_products "
        "(LIKE products INCLUDING DEFAULTS) ON COMMIT DROP"
    )
    await conn.execute("TRUNCATE staged_products")
    result = Upserted()
    try:
        async with conn.transaction():  # a savepoint
            await _upsert(conn, records, result)
    except _ROW_REFUSED:
        pass
    else:
        return result
    kinds = set()
    for index, record in enumerate(records):
        try:
            async with conn.transaction():
                await conn.execute("TRUNCATE staged_products")
                await _upsert(conn, [record], result)
        except _ROW_REFUSED as exc:
            kinds.add(type(exc))
            result.refused[index] = f"{type(exc).__name__}: {exc}"
    if len(records) > 1 and len(result.refused) == len(records) and len(kinds) == 1:
        # Every row, for one reason: the table, not the rows (a column added or changed).
        raise TransientError(f"PostgreSQL refused every product of a page: {result.refused[0]}")
    return result


async def _upsert(conn: asyncpg.Connection, records: list[tuple[Any, ...]], into: Upserted) -> None:
    await conn.copy_records_to_table("staged_products", records=records, columns=PRODUCT_COLUMNS)
    await conn.execute(_UPSERT)
    for row in await conn.fetch(_SUPERSEDED):
        into.superseded[row["vendor_product_id"]] = row["upload_id"]


async def count_from_upload(conn: asyncpg.Connection, upload_id: str) -> int:
    """How many products an upload was the last to change."""
    count: int = await conn.fetchval(
        "SELECT count(*) FROM products WHERE upload_id = $1", upload_id
    )
    return count
