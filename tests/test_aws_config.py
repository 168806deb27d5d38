"""Region, endpoints and credentials come from botocore's own chain, as in every AWS tool: the
settings pass a region or an endpoint only when they name one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Stack
from worker.core.errors import ConfigurationError
from worker.local.servers import free_port
from worker.resources import NO_CREDENTIALS, NO_REGION, open_sqs
from worker.settings import Settings


@pytest.fixture
def no_aws_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No ~/.aws files, no instance metadata: only what a test puts in the environment."""
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


async def client_region(settings: Settings) -> str:
    async with open_sqs(settings) as sqs:
        return sqs.meta.region_name


async def test_the_region_defaults_to_botocores_chain(
    no_aws_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")

    settings = Settings()

    assert settings.aws_region is None
    assert await client_region(settings) == "eu-west-1"


async def test_aws_region_wins_over_aws_default_region(
    no_aws_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")

    assert await client_region(Settings()) == "eu-central-1"


async def test_the_region_of_the_profile_is_used(
    no_aws_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (no_aws_files / "config").write_text("[profile onboarding]\nregion = ap-southeast-2\n")
    monkeypatch.setenv("AWS_PROFILE", "onboarding")
    monkeypatch.delenv("AWS_DEFAULT_REGION")

    assert await client_region(Settings()) == "ap-southeast-2"


async def test_no_region_anywhere_is_a_configuration_error(
    no_aws_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")

    with pytest.raises(ConfigurationError) as raised:
        await client_region(Settings())

    assert str(raised.value) == NO_REGION


async def test_no_credentials_is_a_configuration_error_at_once(
    no_aws_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")

    with pytest.raises(ConfigurationError) as raised:
        await client_region(Settings())

    assert str(raised.value) == NO_CREDENTIALS


async def test_a_per_service_endpoint_wins_over_the_generic_one(
    stack: Stack, no_aws_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN every service sent to a port nobody listens on, and SQS alone to the moto server
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", stack.settings.aws_endpoint_url or "")
    settings = Settings()
    assert settings.aws_endpoint_url is None  # left to botocore

    # WHEN an SQS call is made THEN it reaches the moto server
    async with open_sqs(settings) as sqs:
        response = await sqs.get_queue_attributes(
            QueueUrl=stack.settings.ingest_queue_url or "", AttributeNames=["QueueArn"]
        )

    assert response["Attributes"]["QueueArn"].endswith(":vendor-onboarding-ingest")


async def test_the_generic_endpoint_points_every_client_at_a_local_stack(
    stack: Stack, no_aws_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.settings.aws_endpoint_url or "")

    async with open_sqs(Settings()) as sqs:
        response = await sqs.get_queue_attributes(
            QueueUrl=stack.settings.ingest_queue_url or "", AttributeNames=["QueueArn"]
        )

    assert response["Attributes"]["QueueArn"].endswith(":vendor-onboarding-ingest")
