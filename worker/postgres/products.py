"""The ``products`` table: every SQL statement on it. Written only by the validation stage."""

from __future__ import annotations

from typing import Any

import asyncpg

from worker.core.rows import COLUMNS

# The products table's columns, in the order the records passed to ``upsert`` are built.
PRODUCT_COLUMNS = ("vendor_id", *COLUMNS, "extra", "upload_id")
_UPDATED = PRODUCT_COLUMNS[2:]
_UPSERT = f"""
INSERT INTO products ({", ".join(PRODUCT_COLUMNS)}, updated_at)
SELECT {", ".join(PRODUCT_COLUMNS)}, now() FROM staged_products
ON CONFLICT (vendor_id, vendor_product_id) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in _UPDATED)}, updated_at = now()
WHERE ({", ".join(f"products.{c}" for c in _UPDATED)})
      IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in _UPDATED)})
"""


async def upsert_products(conn: asyncpg.Connection, records: list[tuple[Any, ...]]) -> None:
    """Insert or update products in one transaction: COPY into a temporary table, then one
    ``INSERT ... ON CONFLICT DO UPDATE``; unchanged products are not rewritten."""
    async with conn.transaction():
        await conn.execute(
            "CREATE TEMPORARY TABLE staged_products "
            "(LIKE products INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        await conn.copy_records_to_table(
            "staged_products", records=records, columns=PRODUCT_COLUMNS
        )
        await conn.execute(_UPSERT)


async def count_from_upload(conn: asyncpg.Connection, upload_id: str) -> int:
    """How many products an upload was the last to change."""
    count: int = await conn.fetchval(
        "SELECT count(*) FROM products WHERE upload_id = $1", upload_id
    )
    return count
