"""``local up`` / ``local down``: the servers plus provisioning, with the settings they imply."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from worker.local.provision import StackNames, prepare_database, provision_aws, stack_settings
from worker.local.servers import EmbeddedPostgres, MotoServer, credentials_from_url
from worker.postgres.database import DatabaseCredentials
from worker.settings import Settings

REGION = "us-east-1"
DATABASE = "vendor_onboarding"


def state_dir() -> Path:
    return Path(os.environ.get("VENDOR_ONBOARDING_HOME", ".local-stack"))


def use_local_credentials() -> None:
    """moto accepts any credentials; make sure botocore finds some."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)


@dataclass(frozen=True)
class LocalStack:
    settings: Settings
    bucket: str
    started_moto: bool
    started_postgres: bool


async def up(database_url: str | None = None, *, port: int | None = None) -> LocalStack:
    """Start what is not running, provision everything, write ``env`` for the shell."""
    use_local_credentials()
    home = state_dir()
    moto = MotoServer(home)
    started_moto = moto.endpoint() is None
    endpoint = moto.start(port)
    started_postgres = False
    if database_url:
        server: DatabaseCredentials = credentials_from_url(database_url)
    else:
        postgres = EmbeddedPostgres(home)
        started_postgres = not (postgres.data_dir / "postmaster.pid").exists()
        server = postgres.start()
    names = StackNames()
    credentials = await prepare_database(server, DATABASE)
    queues = await provision_aws(endpoint, REGION, names, credentials)
    settings = stack_settings(endpoint, REGION, names, queues)
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
        "INGEST_QUEUE_URL": queues.ingest,
        "DLQ_URL": queues.dlq,
        "VALIDATION_QUEUE_URL": queues.validation,
        "ERROR_QUEUE_URL": queues.errors,
        "NOTICE_TOPIC_ARN": queues.notice_topic,
        "UPLOAD_BUCKET": names.bucket,
        "DATABASE_SSL_MODE": settings.database_ssl_mode,
    }
    (home / "env").write_text(
        "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())
    )
    return LocalStack(settings, names.bucket, started_moto, started_postgres)


def down(*, moto: bool = True, postgres: bool = True) -> list[str]:
    """Stop the local servers; return what was stopped."""
    home = state_dir()
    stopped = []
    if moto and MotoServer(home).stop():
        stopped.append("moto server")
    if postgres and EmbeddedPostgres(home).stop():
        stopped.append("PostgreSQL")
    return stopped
