"""Schema migrations: ``NNNN_name.sql`` files applied in order, recorded in
``schema_migrations``."""

from __future__ import annotations

from importlib import resources

import asyncpg

# Serialises concurrent ``migrate`` runs (two tasks starting at once).
_LOCK_KEY = 0x766F_6D69


def available() -> list[tuple[str, str]]:
    """``(version, sql)`` for every migration shipped with the package, in order."""
    files = resources.files(__package__)
    return sorted(
        (entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8"))
        for entry in files.iterdir()
        if entry.name.endswith(".sql")
    )


async def apply(conn: asyncpg.Connection) -> list[str]:
    """Apply the migrations not yet recorded; return the versions applied now."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version text PRIMARY KEY,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, sql in available():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            applied_now.append(version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now
