"""TLS to PostgreSQL: verify-full checks the certificate against the CA bundle and the host in
the secret; a bundle that cannot be read, a certificate that does not verify and a server
without TLS are configuration errors at once; a local database without TLS still connects
with ``disable`` (or ``prefer``)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import Stack
from worker.core.errors import ConfigurationError, TransientError
from worker.postgres.database import Database, SecretCache, database_tls
from worker.resources import Resources


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    server_cert: Path
    server_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def certificate_authority(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, and a server certificate it signed for ``localhost`` only."""
    directory = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)
    ca, ca_key = certificate_authority("Test Database CA")
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "server.pem").write_bytes(server.public_bytes(pem))
    (directory / "server.key").write_bytes(
        server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return Pki(directory / "ca.pem", directory / "server.pem", directory / "server.key")


def test_verify_full_verifies_the_certificate_and_the_host_name(pki: Pki) -> None:
    context = database_tls("verify-full", pki.ca_file)

    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True
    subjects = [dict(pair[0] for pair in ca["subject"]) for ca in context.get_ca_certs()]
    assert subjects == [{"commonName": "Test Database CA"}]


def test_verify_ca_verifies_the_certificate_only(pki: Pki) -> None:
    context = database_tls("verify-ca", pki.ca_file)

    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is False


@pytest.mark.parametrize("mode", ["disable", "prefer", "require"])
def test_the_local_modes_are_left_to_the_driver(mode: str, tmp_path: Path) -> None:
    assert database_tls(mode, tmp_path / "not-needed.pem") == mode  # type: ignore[arg-type]


def test_a_missing_ca_bundle_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as raised:
        database_tls("verify-full", tmp_path / "rds-global-bundle.pem")

    message = str(raised.value)
    assert "DATABASE_SSL_ROOT_CERT" in message
    assert "rds-global-bundle.pem" in message
    assert "No such file or directory" in message


def test_a_file_that_is_not_a_ca_bundle_is_a_configuration_error(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_text("not a certificate\n")

    with pytest.raises(ConfigurationError) as raised:
        database_tls("verify-full", bundle)

    assert str(raised.value) == f"DATABASE_SSL_ROOT_CERT '{bundle}' holds no PEM CA certificate"


@pytest.mark.parametrize("mode", ["disable", "prefer"])
async def test_a_local_database_without_tls_still_connects(stack: Stack, mode: str) -> None:
    settings = stack.settings.model_copy(update={"database_ssl_mode": mode})

    async with Resources.open(settings) as res, res.database.connection() as conn:
        encrypted = await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")

    assert encrypted is False


async def test_verify_full_against_a_server_without_tls_fails_at_once(
    stack: Stack, pki: Pki
) -> None:
    if stack.credentials.host.startswith("/"):
        pytest.skip("a Unix socket carries no TLS")
    settings = stack.settings.model_copy(
        update={
            "database_ssl_mode": "verify-full",
            "database_ssl_root_cert": pki.ca_file,
            "startup_attempts": 5,
        }
    )
    started = time.monotonic()

    with pytest.raises(ConfigurationError) as raised:
        async with Resources.open(settings):
            pass

    assert "does not offer TLS, which DATABASE_SSL_MODE requires" in str(raised.value)
    assert time.monotonic() - started < 5  # not retried (the retries alone wait 7.5 s)


@dataclass
class TlsPostgres:
    """The first steps of a PostgreSQL server with TLS: it answers the SSLRequest with 'S',
    completes (or fails) the TLS handshake with a certificate for ``localhost``, then hangs up."""

    port: int
    handshakes: list[bool] = field(default_factory=list)


@asynccontextmanager
async def tls_postgres(pki: Pki) -> AsyncIterator[TlsPostgres]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    handshakes: list[bool] = []

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readexactly(8)  # SSLRequest
            writer.write(b"S")
            await writer.drain()
            await writer.start_tls(context)
            handshakes.append(True)
        except (OSError, asyncio.IncompleteReadError):
            handshakes.append(False)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    server = await asyncio.start_server(session, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield TlsPostgres(port, handshakes)


async def open_database(stack: Stack, host: str, port: int, tls: ssl.SSLContext) -> None:
    name = f"tls/{host}"
    secret = {"username": "u", "password": "p", "host": host, "port": port, "dbname": "d"}
    async with stack.session_client("secretsmanager") as secrets:
        await secrets.create_secret(Name=name, SecretString=json.dumps(secret))
        async with Database.open(SecretCache(secrets, name, 300), max_size=1, tls=tls):
            pass


async def test_verify_full_refuses_a_certificate_for_another_host(stack: Stack, pki: Pki) -> None:
    async with tls_postgres(pki) as server:
        with pytest.raises(ConfigurationError) as raised:
            # The certificate names localhost; the secret names 127.0.0.1.
            await open_database(
                stack, "127.0.0.1", server.port, database_tls("verify-full", pki.ca_file)
            )

    assert "its certificate does not verify (IP address mismatch" in str(raised.value)
    assert "DATABASE_SSL_ROOT_CERT" in str(raised.value)


async def test_verify_full_refuses_a_certificate_from_another_ca(
    stack: Stack, pki: Pki, tmp_path: Path
) -> None:
    other_ca = tmp_path / "other.pem"
    other_ca.write_bytes(
        certificate_authority("Another CA")[0].public_bytes(serialization.Encoding.PEM)
    )

    async with tls_postgres(pki) as server:
        with pytest.raises(ConfigurationError) as raised:
            await open_database(
                stack, "localhost", server.port, database_tls("verify-full", other_ca)
            )

    assert "its certificate does not verify (unable to get local issuer" in str(raised.value)


async def test_verify_full_accepts_the_right_host_and_ca(stack: Stack, pki: Pki) -> None:
    async with tls_postgres(pki) as server:
        # The handshake succeeds; the stand-in then hangs up, which is a transient failure.
        with pytest.raises(TransientError):
            await open_database(
                stack, "localhost", server.port, database_tls("verify-full", pki.ca_file)
            )

    assert True in server.handshakes
