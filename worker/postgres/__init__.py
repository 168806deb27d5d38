"""Adapters for PostgreSQL: the pool and its credentials, one repository per table, and the
schema migrations."""
