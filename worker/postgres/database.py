"""PostgreSQL: credentials from Secrets Manager (cached, re-read on rotation) and one pool.

Every database call goes through :meth:`Database.connection`, which is also the one place where
driver errors become :class:`TransientError`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import asyncpg
from botocore.exceptions import BotoCoreError, ClientError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from worker.aws.errors import error_code
from worker.core.errors import ConfigurationError, TransientError
from worker.settings import SslMode

if TYPE_CHECKING:
    from types_aiobotocore_secretsmanager import SecretsManagerClient

log = logging.getLogger(__name__)

# What asyncpg's ``ssl`` argument is given: a context that verifies, or a mode it handles.
Tls = ssl.SSLContext | SslMode

_AUTH_ERRORS = (asyncpg.InvalidAuthorizationSpecificationError,)
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.InsufficientResourcesError,
    # A transaction PostgreSQL rolled back (deadlock, serialization) or cancelled (a statement
    # or lock timeout): the same work succeeds when tried again.
    asyncpg.TransactionRollbackError,
    asyncpg.QueryCanceledError,
    asyncpg.LockNotAvailableError,
)


@dataclass(frozen=True, slots=True)
class DatabaseCredentials:
    """The secret's JSON: ``{username, password, host, port, dbname}``. Never shown."""

    username: str
    password: str = field(repr=False)
    host: str
    port: int
    dbname: str

    def __repr__(self) -> str:
        return f"DatabaseCredentials(host={self.host!r}, port={self.port}, dbname={self.dbname!r})"

    def connect_args(self) -> dict[str, Any]:
        """Keyword arguments for ``asyncpg.connect`` and ``asyncpg.create_pool``."""
        return {
            "user": self.username,
            "password": self.password,
            "host": self.host,
            "port": self.port,
            "database": self.dbname,
        }

    @staticmethod
    def from_secret(secret_name: str, text: str) -> DatabaseCredentials:
        credentials = _parse_secret(text)
        if credentials is None:
            # Raised outside any handler, so no exception context carries the secret's text.
            raise ConfigurationError(
                f"secret {secret_name!r} is not JSON with username, password, host, port, dbname"
            )
        return credentials


def _parse_secret(text: str) -> DatabaseCredentials | None:
    try:
        document = json.loads(text)
        return DatabaseCredentials(
            username=str(document["username"]),
            password=str(document["password"]),
            host=str(document["host"]),
            port=int(document.get("port", 5432)),
            dbname=str(document.get("dbname", "postgres")),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def database_tls(mode: SslMode, root_cert: Path) -> Tls:
    """asyncpg's ``ssl`` argument for ``DATABASE_SSL_MODE``.

    ``verify-full`` (production) and ``verify-ca`` verify the server's certificate against the
    CA bundle at ``root_cert`` (the RDS bundle shipped in the image); ``verify-full`` also checks
    that it names the host in the secret. A bundle that cannot be read is a
    :class:`ConfigurationError` here, at start-up. ``disable``, ``prefer`` and ``require``
    verify nothing: they are for a local database.
    """
    if mode not in ("verify-ca", "verify-full"):
        return mode
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=root_cert)
    except ssl.SSLError:
        raise ConfigurationError(
            f"DATABASE_SSL_ROOT_CERT {str(root_cert)!r} holds no PEM CA certificate"
        ) from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigurationError(
            f"DATABASE_SSL_ROOT_CERT {str(root_cert)!r} cannot be read ({reason}); "
            f"DATABASE_SSL_MODE={mode} needs the CA bundle that signed the database's certificate"
        ) from None
    context.check_hostname = mode == "verify-full"
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class SecretCache:
    """The database credentials, read from Secrets Manager and kept for ``ttl`` seconds."""

    def __init__(self, client: SecretsManagerClient, secret_name: str, ttl: float) -> None:
        self._client = client
        self._name = secret_name
        self._ttl = ttl
        self._value: DatabaseCredentials | None = None
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self, *, refresh: bool = False) -> DatabaseCredentials:
        async with self._lock:
            fresh = time.monotonic() - self._read_at < self._ttl
            if self._value is None or refresh or not fresh:
                self._value = await self._read()
                self._read_at = time.monotonic()
            return self._value

    async def _read(self) -> DatabaseCredentials:
        try:
            response = await self._client.get_secret_value(SecretId=self._name)
        except ClientError as exc:
            code = error_code(exc)
            if code in {"ResourceNotFoundException", "AccessDeniedException"}:
                raise ConfigurationError(f"secret {self._name!r}: {code}") from None
            raise TransientError(f"Secrets Manager: {code} reading {self._name!r}") from None
        except BotoCoreError as exc:
            raise TransientError(f"Secrets Manager unreachable: {type(exc).__name__}") from None
        return DatabaseCredentials.from_secret(self._name, response.get("SecretString", ""))


class Database:
    """One asyncpg pool for the process, rebuilt once with fresh credentials after an
    authentication failure (the secret was rotated)."""

    def __init__(self, secrets: SecretCache, *, max_size: int, tls: Tls = "prefer") -> None:
        self._secrets = secrets
        self._max_size = max_size
        self._tls = tls
        self._pool: asyncpg.Pool | None = None
        self._rebuild_lock = asyncio.Lock()

    @classmethod
    @asynccontextmanager
    async def open(
        cls, secrets: SecretCache, *, max_size: int, attempts: int = 1, tls: Tls = "prefer"
    ) -> AsyncIterator[Database]:
        """Connect eagerly (so a wrong host or password, or a certificate that does not verify,
        shows at start-up) and close on exit."""
        database = cls(secrets, max_size=max_size, tls=tls)
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(TransientError),
            wait=wait_exponential(multiplier=0.5, max=8),
            stop=stop_after_attempt(attempts),
            reraise=True,
            before_sleep=lambda state: log.warning(
                "database not reachable yet, retrying",
                extra={"attempt": state.attempt_number, "error": str(state.outcome.exception())}
                if state.outcome
                else {},
            ),
        ):
            with attempt:
                await database._connect()
        try:
            yield database
        finally:
            await database.close()

    async def _connect(self, *, refresh: bool = False) -> None:
        credentials = await self._secrets.get(refresh=refresh)
        try:
            pool = await asyncpg.create_pool(
                **credentials.connect_args(),
                ssl=self._tls,
                min_size=1,
                max_size=self._max_size,
                command_timeout=60,
                timeout=10,
            )
        except _AUTH_ERRORS as exc:
            raise ConfigurationError(
                f"database {credentials!r} refused the credentials: {exc}"
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise ConfigurationError(
                f"database {credentials!r}: its certificate does not verify "
                f"({exc.verify_message}); check DATABASE_SSL_ROOT_CERT and the host in the secret"
            ) from None
        except ConnectionError as exc:
            if "rejected SSL upgrade" not in str(exc):
                raise TransientError(f"database {credentials!r} unreachable: {exc}") from None
            raise ConfigurationError(
                f"database {credentials!r} does not offer TLS, which "
                "DATABASE_SSL_MODE requires (set it to prefer or disable for a local database)"
            ) from None
        except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:
            raise TransientError(f"database {credentials!r} unreachable: {exc}") from None
        old, self._pool = self._pool, pool
        if old is not None:
            await _close_pool(old)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; driver errors inside the block become :class:`TransientError`."""
        pool = self._pool
        if pool is None:
            raise ConfigurationError("the database is closed")
        try:
            try:
                conn_cm = pool.acquire(timeout=30)
                conn = await conn_cm.__aenter__()
            except _AUTH_ERRORS:
                pool = await self._rebuild(pool)
                conn_cm = pool.acquire(timeout=30)
                conn = await conn_cm.__aenter__()
            try:
                yield cast("asyncpg.Connection", conn)
            finally:
                await conn_cm.__aexit__(None, None, None)
        except _AUTH_ERRORS as exc:
            raise TransientError(f"database refused the credentials: {exc}") from None
        except ConfigurationError as exc:  # a rebuild that failed: the secret may be mid-rotation
            raise TransientError(str(exc)) from None
        except _UNAVAILABLE as exc:
            raise TransientError(f"database unavailable: {type(exc).__name__}: {exc}") from exc

    async def _rebuild(self, failed: asyncpg.Pool) -> asyncpg.Pool:
        """A new pool with fresh credentials, unless another task already built one."""
        async with self._rebuild_lock:
            if self._pool is failed:
                log.warning("database refused the credentials; re-reading the secret")
                await self._connect(refresh=True)
            if self._pool is None:
                raise ConfigurationError("the database is closed")
            return self._pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await _close_pool(pool)


async def _close_pool(pool: asyncpg.Pool) -> None:
    try:
        await asyncio.wait_for(pool.close(), timeout=10)
    except (TimeoutError, *_UNAVAILABLE):
        pool.terminate()
