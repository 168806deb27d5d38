"""``local up`` / ``local down``: the servers plus provisioning, with the settings they imply."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from worker.local.provision import StackNames, prepare_database, provision_aws, stack_settings
from worker.local.servers import (
    EmbeddedPostgres,
    MotoServer,
    credentials_from_url,
    database_named_in,
)
from worker.postgres.database import DatabaseCredentials
from worker.settings import Settings

REGION = "us-east-1"
# The database the stack works in, unless --database-url names one.
DATABASE = "vendor_onboarding"


def state_dir() -> Path:
    return Path(os.environ.get("VENDOR_ONBOARDING_HOME", ".local-stack"))


LOCAL_CREDENTIALS = ("testing", "testing")


def use_local_credentials() -> None:
    """moto accepts any credentials; make sure botocore finds some."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", LOCAL_CREDENTIALS[0])
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", LOCAL_CREDENTIALS[1])
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
    database = DATABASE
    if database_url:
        server: DatabaseCredentials = credentials_from_url(database_url)
        database = database_named_in(database_url) or DATABASE
    else:
        postgres = EmbeddedPostgres(home)
        started_postgres = not (postgres.data_dir / "postmaster.pid").exists()
        server = postgres.start()
    names = StackNames()
    credentials = await prepare_database(server, database)
    queues = await provision_aws(endpoint, REGION, names, credentials)
    settings = stack_settings(endpoint, REGION, names, queues)
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        # moto takes any credentials: never write the caller's own to a file.
        "AWS_ACCESS_KEY_ID": LOCAL_CREDENTIALS[0],
        "AWS_SECRET_ACCESS_KEY": LOCAL_CREDENTIALS[1],
        "INGEST_QUEUE_URL": queues.ingest,
        "DLQ_URL": queues.dlq,
        "VALIDATION_QUEUE_URL": queues.validation,
        "VALIDATION_DLQ_URL": queues.validation_dlq,
        "ERROR_QUEUE_URL": queues.errors,
        "NOTICE_TOPIC_ARN": queues.notice_topic,
        "UPLOAD_BUCKET": names.bucket,
        "DATABASE_SSL_MODE": settings.database_ssl_mode,
    }
    write_env(home / "env", env)
    return LocalStack(settings, names.bucket, started_moto, started_postgres)


def write_env(path: Path, env: dict[str, str]) -> None:
    """``export NAME=value`` lines for a shell, each name once, the file ending with a newline;
    replaced whole (written aside, then renamed), never appended to."""
    lines = [f"export {name}={shlex.quote(value)}\n" for name, value in env.items()]
    draft = path.with_name(path.name + ".new")
    draft.write_text("".join(lines))
    draft.replace(path)


def down(*, moto: bool = True, postgres: bool = True) -> list[str]:
    """Stop the local servers; return what was stopped."""
    home = state_dir()
    stopped = []
    if moto and MotoServer(home).stop():
        stopped.append("moto server")
    if postgres and EmbeddedPostgres(home).stop():
        stopped.append("PostgreSQL")
    return stopped
