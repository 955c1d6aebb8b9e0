"""SigV4 signing, checked by a stub that recomputes every signature with botocore from known credentials."""

from __future__ import annotations

import pytest
from botocore.credentials import Credentials
from click.testing import CliRunner, Result

from taskctl.cli import EXIT_ACCESS, EXIT_OK, cli
from taskctl.client import ApiClient, NoCredentials, NoRegion, is_loopback, is_operator_route, region_of
from tests.cli.conftest import REGION, TEST_CREDENTIALS
from tests.cli.fake_api import FakeApi


def run_signed(fake: FakeApi, *args: str) -> Result:
    # The fake listens on loopback, which is never signed by default: --sign asks for it.
    return CliRunner().invoke(cli, ["--url", fake.url, "--sign", "--api-key", "stage-key", *args])


@pytest.mark.parametrize(
    "args",
    [
        ["stats"],
        ["list", "--status", "RETRYING", "--cursor", "fake-0"],
        ["retry", "a b/c"],
        ["cancel", "t-1"],
        ["retry", "--all-failed", "--dry-run"],
    ],
)
def test_every_operator_route_is_signed_as_the_stub_recomputes_it(
    guarded_fake: FakeApi, aws_identity: Credentials, args: list[str]
) -> None:
    guarded_fake.add("a b/c", "FAILED", last_error="e")
    guarded_fake.add("t-1", "RETRYING", last_error="e")

    result = run_signed(guarded_fake, *args)

    assert result.exit_code == EXIT_OK, result.output
    sent = guarded_fake.seen[-1].headers
    assert sent["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={TEST_CREDENTIALS.access_key}/")
    assert f"/{REGION}/execute-api/aws4_request" in sent["authorization"]
    assert sent["x-amz-security-token"] == TEST_CREDENTIALS.token


def test_the_stub_refuses_a_signature_made_with_another_secret(
    guarded_fake: FakeApi, no_aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", TEST_CREDENTIALS.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", TEST_CREDENTIALS.token)

    result = run_signed(guarded_fake, "stats")

    assert result.exit_code == EXIT_ACCESS
    assert "signature we calculated does not match" in result.stderr


def test_the_stub_refuses_a_signature_for_another_region(
    guarded_fake: FakeApi, aws_identity: Credentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")

    result = run_signed(guarded_fake, "stats")

    assert result.exit_code == EXIT_ACCESS
    assert "us-west-2/execute-api" in result.stderr


def test_the_stub_refuses_a_signature_whose_body_was_changed_on_the_way(guarded_fake: FakeApi) -> None:
    client = ApiClient(guarded_fake.url, sign=True, session=_session())
    headers = client.signer.headers(
        "POST",
        guarded_fake.url + "/retries",
        b'{"status": "FAILED", "dryRun": true}',
        {"Content-Type": "application/json"},
        operator=True,
    )
    host_and_path = f"{guarded_fake.url.removeprefix('http://')}"
    lowered = {name.lower(): value for name, value in headers.items()} | {"host": host_and_path}

    honest = guarded_fake.signature_problem("POST", "/retries", lowered, b'{"status": "FAILED", "dryRun": true}')
    tampered = guarded_fake.signature_problem("POST", "/retries", lowered, b'{"status": "FAILED", "dryRun": false}')

    assert honest is None
    assert tampered is not None and "does not match" in tampered


def test_without_credentials_an_operator_route_is_refused_before_sending(guarded_fake: FakeApi) -> None:
    result = run_signed(guarded_fake, "retry", "t-1")

    assert result.exit_code == EXIT_ACCESS
    assert "no AWS credentials found" in result.stderr
    assert "operator route" in result.stderr
    assert guarded_fake.seen == []


def test_without_credentials_the_api_key_routes_still_work_unsigned(guarded_fake: FakeApi) -> None:
    result = run_signed(guarded_fake, "publish", "t-9")

    assert result.exit_code == EXIT_OK, result.output
    assert guarded_fake.seen[-1].headers["x-api-key"] == "stage-key"
    assert "authorization" not in guarded_fake.seen[-1].headers


def test_a_missing_api_key_is_a_403_said_in_one_line(guarded_fake: FakeApi, aws_identity: Credentials) -> None:
    result = CliRunner().invoke(cli, ["--url", guarded_fake.url, "--sign", "show", "t-1"])

    assert result.exit_code == EXIT_ACCESS
    assert result.stderr.strip() == "taskctl: error: show t-1: 403 Forbidden"


def test_only_loopback_urls_go_unsigned_by_default() -> None:
    assert ApiClient("http://127.0.0.1:8000").sign is False
    assert ApiClient("http://localhost:8000/").sign is False
    assert ApiClient("http://[::1]:8000").sign is False
    assert ApiClient("https://abc123.execute-api.eu-west-1.amazonaws.com/api").sign is True
    assert ApiClient("https://tasks.example.com").sign is True
    assert is_loopback("http://127.9.9.9") and not is_loopback("http://10.0.0.1")


def test_the_region_comes_from_the_url_before_the_configuration(no_aws: None) -> None:
    assert region_of("https://abc123.execute-api.ap-southeast-2.amazonaws.com/api") == "ap-southeast-2"
    assert region_of("https://tasks.example.com") is None
    assert ApiClient("https://abc123.execute-api.ap-southeast-2.amazonaws.com/api").region() == "ap-southeast-2"
    assert ApiClient("https://tasks.example.com").region() == REGION


def test_no_region_anywhere_is_said_clearly(no_aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(NoRegion, match="set AWS_DEFAULT_REGION"):
        ApiClient("https://tasks.example.com").region()


def test_a_named_profile_that_does_not_exist_is_a_credentials_error(no_aws: None) -> None:
    with pytest.raises(NoCredentials, match="cannot load AWS credentials"):
        ApiClient("https://tasks.example.com", profile="nobody").credentials()


@pytest.mark.parametrize(
    ("method", "path", "operator"),
    [
        ("GET", "/tasks?status=FAILED", True),
        ("GET", "/stats", True),
        ("POST", "/tasks/x/retry", True),
        ("POST", "/tasks/x/cancel", True),
        ("POST", "/retries", True),
        ("GET", "/types", True),
        ("GET", "/types/checksum", True),
        ("POST", "/types/checksum/pause", True),
        ("POST", "/types/checksum/resume", True),
        ("GET", "/tasks/x", False),
        ("POST", "/tasks", False),
        ("POST", "/publish", False),
        ("GET", "/health", False),
    ],
)
def test_operator_routes_are_the_contracts_iam_routes(method: str, path: str, operator: bool) -> None:
    assert is_operator_route(method, path) is operator


def _session():  # type: ignore[no-untyped-def]
    import boto3

    return boto3.session.Session(
        aws_access_key_id=TEST_CREDENTIALS.access_key,
        aws_secret_access_key=TEST_CREDENTIALS.secret_key,
        aws_session_token=TEST_CREDENTIALS.token,
        region_name=REGION,
    )
