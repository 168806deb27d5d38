"""The embedded local stack: a moto server and a PostgreSQL, provisioned like production."""
