"""The one settings object, built from the environment at the edge and passed down."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.core.errors import ConfigurationError


class Settings(BaseSettings):
    """Every knob of the service. Environment names are the field names in upper case."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    aws_region: str = "us-east-1"
    # botocore's own variable: points every client at a local stack when set.
    aws_endpoint_url: str | None = None

    ingest_queue_url: str | None = None
    dlq_url: str | None = None
    # The validation stage: its job queue, the queue for invalid rows, the vendor-notice topic.
    validation_queue_url: str | None = None
    error_queue_url: str | None = None
    notice_topic_arn: str | None = None
    dynamodb_table: str = "UploadRecords"
    rds_secret_name: str = "ecommerce/rds/credentials"
    metrics_namespace: str = "EcommerceProductOnboarding"
    metrics_enabled: bool = True
    metrics_interval_seconds: float = Field(default=10.0, gt=0)

    files_in_flight: int = Field(default=4, ge=1, le=64)
    validations_in_flight: int = Field(default=2, ge=1, le=64)
    batches_in_flight: int = Field(default=16, ge=1, le=128)
    # The item writer gives up on a file after this long without a single item written.
    staging_stall_seconds: float = Field(default=300.0, gt=0)
    receive_wait_seconds: int = Field(default=20, ge=0, le=20)
    visibility_timeout_seconds: int = Field(default=300, ge=1, le=43200)
    # A message whose upload failed comes back after base * 2**(receives - 1) s, up to max.
    retry_backoff_seconds: float = Field(default=30.0, ge=0)
    retry_backoff_max_seconds: float = Field(default=900.0, ge=0)
    shutdown_grace_seconds: float = Field(default=60.0, ge=0)
    # The health endpoint (GET /healthz/live, /healthz/ready); 0 turns it off.
    health_port: int = Field(default=8080, ge=0, le=65535)
    # Lambda: stop this long before the invocation's time runs out.
    lambda_safety_margin_seconds: float = Field(default=10.0, ge=0)
    secret_ttl_seconds: float = Field(default=300.0, ge=0)
    db_pool_max_size: int = Field(default=8, ge=1)
    startup_attempts: int = Field(default=5, ge=1)
    s3_read_chunk_bytes: int = Field(default=256 * 1024, ge=4096, le=1024 * 1024)

    def require_ingest_queue(self) -> str:
        if not self.ingest_queue_url:
            raise ConfigurationError("INGEST_QUEUE_URL is not set")
        return self.ingest_queue_url

    def require_validation_queues(self) -> tuple[str, str]:
        if not self.validation_queue_url or not self.error_queue_url:
            raise ConfigurationError("VALIDATION_QUEUE_URL and ERROR_QUEUE_URL must be set")
        return self.validation_queue_url, self.error_queue_url

    def require_dlq(self) -> str:
        if not self.dlq_url:
            raise ConfigurationError("DLQ_URL is not set")
        return self.dlq_url
