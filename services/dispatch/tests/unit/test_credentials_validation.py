"""What an account may save as a provider credential, and what errors say about it."""

from __future__ import annotations

import pytest

from orqen_common.errors import OrqenError
from orqen_dispatch.credentials.validation import validate_secret


@pytest.mark.parametrize("provider", ["openai", "anthropic", "groq"])
def test_api_key_providers_need_only_the_key(provider: str) -> None:
    fields, info = validate_secret(provider, "", {"api_key": "  sk-live-0123456789wxyz \n"})
    assert fields == {"api_key": "sk-live-0123456789wxyz"}
    assert (info.provider, info.auth, info.last4, info.base_url, info.region) == (provider, "api_key", "wxyz", "", "")


def test_bedrock_iam_keys_with_a_region_and_an_optional_session_token() -> None:
    keys = {"access_key_id": "AKIAEXAMPLE1234", "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"}
    fields, info = validate_secret("bedrock", "iam", {**keys, "session_token": ""}, region="eu-west-3")
    assert fields == {**keys, "region": "eu-west-3"}
    assert (info.auth, info.last4, info.region) == ("iam", "EKEY", "eu-west-3")
    fields, _ = validate_secret("bedrock", "iam", {**keys, "session_token": "FwoGZXIvYXdzEJr"}, region="us-gov-west-1")
    assert fields["session_token"] == "FwoGZXIvYXdzEJr"


def test_bedrock_api_key_as_a_bearer_token() -> None:
    fields, info = validate_secret(
        "bedrock", "bearer", {"bearer_token": "ABSKQmVkcm9ja0FQSUtleQ=="}, region="us-east-1"
    )
    assert fields == {"bearer_token": "ABSKQmVkcm9ja0FQSUtleQ==", "region": "us-east-1"}
    assert (info.auth, info.last4) == ("bearer", "eQ==")


def test_any_other_name_is_an_openai_compatible_provider_with_its_base_url() -> None:
    fields, info = validate_secret(
        "together", "api_key", {"api_key": "tgp_v1_abcdefgh"}, " https://api.together.xyz/v1/ "
    )
    assert fields == {"api_key": "tgp_v1_abcdefgh", "base_url": "https://api.together.xyz/v1"}
    assert (info.provider, info.base_url, info.last4) == ("together", "https://api.together.xyz/v1", "efgh")
    _, local = validate_secret("my-llm_2", "", {"api_key": "local-key-1234"}, "http://10.0.0.5:8000/openai/v1")
    assert local.base_url == "http://10.0.0.5:8000/openai/v1"


def test_a_short_secret_shows_no_characters() -> None:
    assert validate_secret("openai", "api_key", {"api_key": "abc1234"}).info.last4 == ""


_IAM = {"access_key_id": "AKIAEXAMPLE1234", "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"}
_KEY = {"api_key": "sk-proj-abcdefghijklmnop"}


@pytest.mark.parametrize(
    ("provider", "auth", "secret", "base_url", "region", "problem"),
    [
        ("openai", "iam", _KEY, "", "", "auth 'iam' is not accepted for provider 'openai': use 'api_key'"),
        ("openai", "", {**_KEY, "key": "x"}, "", "", "Unknown secret field(s) for openai api_key: key"),
        ("openai", "", {}, "", "", "Missing secret field(s) for openai api_key: api_key; expected api_key"),
        ("openai", "", {"api_key": "   "}, "", "", "Missing secret field(s) for openai api_key: api_key"),
        ("openai", "", _KEY, "https://proxy.example/v1", "", "base_url is only for OpenAI-compatible providers"),
        ("anthropic", "", _KEY, "", "us-east-1", "region is only for bedrock"),
        ("bedrock", "", _IAM, "", "us-east-1", "auth '' is not accepted for provider 'bedrock': use 'iam' or 'bearer'"),
        ("bedrock", "api_key", _KEY, "", "us-east-1", "auth 'api_key' is not accepted"),
        ("bedrock", "iam", {"access_key_id": "AKIAEXAMPLE1234"}, "", "us-east-1", "Missing secret field(s)"),
        ("bedrock", "iam", _IAM, "", "", "region is required for bedrock"),
        ("bedrock", "iam", _IAM, "", "us_east_1", "region 'us_east_1' is not an AWS region name"),
        ("bedrock", "iam", _IAM, "", "evil.example.com/x", "is not an AWS region name"),
        ("bedrock", "bearer", {"bearer_token": "ABSK1234", **_KEY}, "", "us-east-1", "Unknown secret field(s)"),
        ("bedrock", "bearer", {"bearer_token": "ABSK1234"}, "https://x/v1", "us-east-1", "base_url is only"),
        ("together", "", _KEY, "", "", "base_url is required for the OpenAI-compatible provider 'together'"),
        ("together", "bearer", _KEY, "https://api.together.xyz/v1", "", "auth 'bearer' is not accepted"),
        ("together", "", _KEY, "ftp://files.example/v1", "", "is not an http(s) URL"),
        ("together", "", _KEY, "https:///v1", "", "is not an http(s) URL"),
        ("together", "", _KEY, "api.together.xyz/v1", "", "is not an http(s) URL"),
        ("together", "", _KEY, "https://host:99999/v1", "", "is not an http(s) URL"),
        ("together", "", _KEY, "https://user:pw@host/v1", "", "put the key in the secret, not in the URL"),
        ("together", "", _KEY, "https://host/v1?x=1", "", "no query, fragment"),
        ("together", "", _KEY, "https://host/v 1", "", "no query, fragment, spaces"),
        ("Together", "", _KEY, "https://host/v1", "", "is not a provider name"),
        ("a/b", "", _KEY, "https://host/v1", "", "is not a provider name"),
        ("orqen", "", _KEY, "https://host/v1", "", "'orqen' is reserved"),
        ("", "", _KEY, "", "", "is not a provider name"),
        ("openai", "", {"api_key": "sk-with space"}, "", "", "api_key holds spaces or characters"),
        ("openai", "", {"api_key": "sk-caf\u00e9"}, "", "", "api_key holds spaces or characters"),
        ("openai", "", {"api_key": "s" * 8193}, "", "", "api_key is longer than 8192 characters"),
    ],
)
def test_invalid_credentials_are_400s_naming_the_problem_never_the_secret(
    provider: str, auth: str, secret: dict[str, str], base_url: str, region: str, problem: str
) -> None:
    with pytest.raises(OrqenError) as refused:
        validate_secret(provider, auth, secret, base_url, region)
    assert refused.value.http_status == 400
    assert problem in refused.value.message
    for value in secret.values():
        if len(value.strip()) > 4:
            assert value.strip() not in refused.value.message
