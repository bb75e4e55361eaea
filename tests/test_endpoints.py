"""Where the client sends its calls follows the AWS conventions, as the AWS CLI does."""

from __future__ import annotations

import pytest

from archiver.sync.client import make_client, source_endpoint
from archiver.sync.options import ClientSettings

pytestmark = pytest.mark.engine_free  # the archive's engine plays no part

AWS = "https://servicediscovery.us-east-1.amazonaws.com"


@pytest.fixture(autouse=True)
def _clean(monkeypatch, tmp_path) -> None:
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SERVICEDISCOVERY",
                "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "AWS_PROFILE"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)


def _endpoint(**settings) -> str:
    client = make_client(ClientSettings(region="us-east-1", **settings))
    return str(client.meta.endpoint_url)


def test_the_default_is_the_regional_aws_endpoint() -> None:
    assert _endpoint() == AWS


def test_the_service_specific_variable_wins_over_the_global_one(monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1111")
    assert _endpoint() == "http://127.0.0.1:1111"
    monkeypatch.setenv("AWS_ENDPOINT_URL_SERVICEDISCOVERY", "http://127.0.0.1:2222")
    assert _endpoint() == "http://127.0.0.1:2222"
    assert _endpoint(endpoint_url="http://127.0.0.1:3333") == "http://127.0.0.1:3333"


def test_ignore_configured_endpoints_is_honoured(monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SERVICEDISCOVERY", "http://127.0.0.1:2222")
    monkeypatch.setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
    assert _endpoint() == AWS
    assert _endpoint(endpoint_url="http://127.0.0.1:3333") == "http://127.0.0.1:3333"


def test_a_profiles_endpoint_url_is_used(monkeypatch, tmp_path) -> None:
    config = tmp_path / "config"
    config.write_text(
        "[profile local]\nregion = us-east-1\nservices = emu\n"
        "aws_access_key_id = k\naws_secret_access_key = s\n"  # a client needs credentials
        "[services emu]\nservicediscovery =\n  endpoint_url = http://127.0.0.1:4444\n"
        "[profile everywhere]\nregion = us-east-1\nendpoint_url = http://127.0.0.1:5555\n"
        "aws_access_key_id = k\naws_secret_access_key = s\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    assert _endpoint(profile="local") == "http://127.0.0.1:4444"
    assert _endpoint(profile="everywhere") == "http://127.0.0.1:5555"


def test_a_configured_endpoint_that_is_no_url_is_bad_input(runner, tmp_path, monkeypatch) -> None:
    """AWS_ENDPOINT_URL=localhost:8765 (no scheme) was botocore's "ValueError: Invalid
    endpoint", exit 1, naming neither the variable nor a fix; --endpoint-url is checked
    with the options, and a configured endpoint is now checked as it is."""
    from tests.conftest import invoke

    where = "AWS_ENDPOINT_URL_SERVICEDISCOVERY, AWS_ENDPOINT_URL or the profile's endpoint_url"
    # ftp:// botocore takes, and it failed at the first call, the archive made
    for url, says in (("localhost:8765", "Invalid endpoint: localhost:8765"),
                      ("ftp://127.0.0.1:9", "'ftp://127.0.0.1:9' is not an http:// or https:// URL")):  # fmt: skip
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        result = invoke(runner, "--db", str(tmp_path / "a.db"), "sync", "--region", "us-east-1")
        assert (result.exit_code, result.stderr) == (2, f"error: {where}: {says}\n")
        assert not (tmp_path / "a.db").exists()


@pytest.mark.parametrize(
    "resolved",
    [
        AWS,
        "https://servicediscovery-fips.us-gov-west-1.amazonaws.com",
        "https://servicediscovery.cn-north-1.api.amazonwebservices.com.cn",
        "https://vpce-1a2b.servicediscovery.us-east-1.vpce.amazonaws.com",
        "https://servicediscovery.us-iso-east-1.c2s.ic.gov",
    ],
)
def test_aws_in_any_partition_or_form_is_recorded_as_aws(resolved) -> None:
    """As sources made before endpoints were recorded (None); a configured one that is
    not AWS's is the source's, and the one given always is."""
    assert source_endpoint(None, resolved) is None
    assert source_endpoint(None, "http://127.0.0.1:2222/") == "http://127.0.0.1:2222/"
    assert source_endpoint(AWS, resolved) == AWS
