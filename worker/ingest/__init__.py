"""The ingest stage: one S3 object streamed, typed row by row and staged in DynamoDB, its
outcome recorded in ``upload_history``."""
