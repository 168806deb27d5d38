"""The one settings object, built from the environment at the edge and passed down."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from worker.core.errors import ConfigurationError

# Fields botocore resolves itself from the environment: AWS_ENDPOINT_URL and the per-service
# AWS_ENDPOINT_URL_<SERVICE> (which an explicit endpoint would override) are left to it.
_LEFT_TO_BOTOCORE = frozenset({"aws_endpoint_url"})

# libpq's sslmode names (DATABASE_SSL_MODE).
SslMode = Literal["disable", "prefer", "require", "verify-ca", "verify-full"]

# The two stages, each with its queue and that queue's DLQ.
Stage = Literal["ingest", "validation"]
STAGES: tuple[Stage, ...] = ("ingest", "validation")
# The variables naming each stage's queue and DLQ, for messages about a missing one.
QUEUE_VARIABLES: dict[Stage, str] = {
    "ingest": "INGEST_QUEUE_URL",
    "validation": "VALIDATION_QUEUE_URL",
}
DLQ_VARIABLES: dict[Stage, str] = {"ingest": "DLQ_URL", "validation": "VALIDATION_DLQ_URL"}


class _Environment(EnvSettingsSource):
    """The process environment, minus the variables botocore reads itself."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field_name in _LEFT_TO_BOTOCORE:
            return None, field_name, False
        return super().get_field_value(field, field_name)


class Settings(BaseSettings):
    """Every knob of the service. Environment names are the field names in upper case."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    # The region of every client. Unset: botocore's chain (AWS_DEFAULT_REGION, the profile).
    aws_region: str | None = None
    # An endpoint for every client, given in code (the local stack, tests). Never read from the
    # environment: botocore reads AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE> itself.
    aws_endpoint_url: str | None = None

    ingest_queue_url: str | None = None
    # The ingest queue's DLQ.
    dlq_url: str | None = None
    # The validation stage: its job queue and that queue's DLQ, the queue for invalid rows,
    # the vendor-notice topic.
    validation_queue_url: str | None = None
    validation_dlq_url: str | None = None
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
    # ECS: the agent's endpoint (set by ECS itself). While files are in flight the task is
    # protected from scale-in for this long, renewed halfway; lifted when idle.
    ecs_agent_uri: str | None = None
    task_protection_minutes: int = Field(default=60, ge=1, le=2880)
    # Lambda: stop this long before the invocation's time runs out.
    lambda_safety_margin_seconds: float = Field(default=10.0, ge=0)
    # TLS to PostgreSQL (libpq's sslmode names). verify-full checks the server's certificate
    # against DATABASE_SSL_ROOT_CERT (the RDS CA bundle in the image) and its host name.
    database_ssl_mode: SslMode = "verify-full"
    database_ssl_root_cert: Path = Path("/etc/ssl/certs/rds-global-bundle.pem")
    secret_ttl_seconds: float = Field(default=300.0, ge=0)
    db_pool_max_size: int = Field(default=8, ge=1)
    startup_attempts: int = Field(default=5, ge=1)
    s3_read_chunk_bytes: int = Field(default=256 * 1024, ge=4096, le=1024 * 1024)

    @classmethod
    def from_environment(cls) -> Self:
        """The settings of this process. A value that does not parse is a
        :class:`ConfigurationError` naming the variable, in one line."""
        try:
            return cls()
        except ValidationError as exc:
            raise ConfigurationError(describe_invalid(exc)) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _Environment(settings_cls), dotenv_settings, file_secret_settings

    def require_ingest_queue(self) -> str:
        if not self.ingest_queue_url:
            raise ConfigurationError("INGEST_QUEUE_URL is not set")
        return self.ingest_queue_url

    def require_validation_queues(self) -> tuple[str, str]:
        if not self.validation_queue_url or not self.error_queue_url:
            raise ConfigurationError("VALIDATION_QUEUE_URL and ERROR_QUEUE_URL must be set")
        return self.validation_queue_url, self.error_queue_url

    def queue_url_of(self, stage: Stage) -> str | None:
        """The queue a stage consumes: INGEST_QUEUE_URL or VALIDATION_QUEUE_URL."""
        return self.ingest_queue_url if stage == "ingest" else self.validation_queue_url

    def dlq_url_of(self, stage: Stage) -> str | None:
        """The DLQ of a stage's queue: DLQ_URL or VALIDATION_DLQ_URL."""
        return self.dlq_url if stage == "ingest" else self.validation_dlq_url

    def require_queue(self, stage: Stage) -> str:
        if not (url := self.queue_url_of(stage)):
            raise ConfigurationError(f"{QUEUE_VARIABLES[stage]} is not set")
        return url

    def require_dlq(self, stage: Stage = "ingest") -> str:
        if not (url := self.dlq_url_of(stage)):
            raise ConfigurationError(f"{DLQ_VARIABLES[stage]} is not set")
        return url


def describe_invalid(exc: ValidationError) -> str:
    """``invalid setting FILES_IN_FLIGHT=0: should be greater than or equal to 1`` (several
    joined by ``;``), rather than pydantic's report."""
    problems = []
    for error in exc.errors(include_url=False):
        name = "_".join(str(part) for part in error["loc"]).upper()
        value = error.get("input")
        shown = f"={shlex.quote(value[:80])}" if isinstance(value, str) else ""
        message = str(error["msg"])
        message = message.removeprefix("Input ").removeprefix("Value error, ")
        problems.append(f"{name}{shown}: {message[:1].lower()}{message[1:]}")
    return ("invalid setting " if len(problems) == 1 else "invalid settings: ") + "; ".join(
        problems
    )
