"""The pure core: S3 keys, events, CSV rows, staging items, business rules, reports, errors.
Nothing here does I/O or imports aioboto3 or asyncpg."""
