"""Sealing, validating and merging provider credentials, and the providers using a call's own key."""

from __future__ import annotations

import base64
import os
from typing import Any

import grpc
import httpx
import orjson
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from orqen.v1 import accounting_pb2
from orqen_common.errors import OrqenError
from orqen_common.formats.openai import ChatRequest, UserMessage
from orqen_dispatch.credentials import (
    KEYS_SETTING,
    KeyRing,
    UnusableCredentialError,
    generate_key_setting,
    merge,
    validate_secret,
)
from orqen_dispatch.providers.anthropic import AnthropicMessages
from orqen_dispatch.providers.bedrock import BedrockConverse
from orqen_dispatch.providers.openai import OpenAICompatible

KEY_1 = bytes(range(32))
KEY_2 = bytes(range(32, 64))
SETTING_1 = "k1:" + base64.b64encode(KEY_1).decode()
SETTING_2 = "k2:" + base64.b64encode(KEY_2).decode()
SECRET = {"api_key": "sk-proj-abcdefghijklmnop"}
ACCOUNT, OTHER_ACCOUNT = "acct-1", "acct-2"


def ring(setting: str = SETTING_1) -> KeyRing:
    return KeyRing.from_setting(setting)


# --- sealing ---------------------------------------------------------------------------


def test_a_sealed_secret_opens_to_what_was_sealed_and_shows_no_plaintext() -> None:
    sealed = ring().seal(SECRET, ACCOUNT, "openai")
    assert sealed.key_id == "k1" and len(sealed.nonce) == 12
    assert b"sk-proj" not in sealed.ciphertext and b"api_key" not in sealed.ciphertext
    assert ring().open(sealed, ACCOUNT, "openai") == SECRET


def test_every_seal_uses_a_fresh_nonce() -> None:
    first, second = ring().seal(SECRET, ACCOUNT, "openai"), ring().seal(SECRET, ACCOUNT, "openai")
    assert first.nonce != second.nonce and first.ciphertext != second.ciphertext


@pytest.mark.parametrize(("account", "provider"), [(OTHER_ACCOUNT, "openai"), (ACCOUNT, "groq"), ("acct-1:openai", "")])
def test_a_ciphertext_copied_to_another_account_or_provider_does_not_open(account: str, provider: str) -> None:
    sealed = ring().seal(SECRET, ACCOUNT, "openai")
    with pytest.raises(UnusableCredentialError, match="another account or provider"):
        ring().open(sealed, account, provider)


def _altered(sealed: accounting_pb2.SealedSecret, **changes: Any) -> accounting_pb2.SealedSecret:
    copy = accounting_pb2.SealedSecret()
    copy.CopyFrom(sealed)
    for name, value in changes.items():
        setattr(copy, name, value)
    return copy


def _flip_first_bit(data: bytes) -> bytes:
    return bytes([data[0] ^ 1]) + data[1:]


@pytest.mark.parametrize(
    ("alter", "reason"),
    [
        (lambda s: _altered(s, ciphertext=_flip_first_bit(s.ciphertext)), "altered"),
        (lambda s: _altered(s, ciphertext=s.ciphertext[:-1]), "altered"),
        (lambda s: _altered(s, nonce=_flip_first_bit(s.nonce)), "altered"),
        (lambda s: _altered(s, nonce=s.nonce[:8]), "nonce is 8 bytes"),
        (lambda s: _altered(s, key_id="k9"), "key 'k9', which is not in ORQEN_CREDENTIALS_KEYS"),
    ],
)
def test_tampering_or_an_unknown_key_makes_a_clear_error(alter: Any, reason: str) -> None:
    sealed = ring().seal(SECRET, ACCOUNT, "openai")
    with pytest.raises(UnusableCredentialError, match=reason):
        ring().open(alter(sealed), ACCOUNT, "openai")


@pytest.mark.parametrize(("plaintext", "reason"), [(b"not json", "not JSON"), (b'{"api_key": 1}', "not an object")])
def test_a_payload_that_is_not_an_object_of_strings_is_unusable(plaintext: bytes, reason: str) -> None:
    nonce = os.urandom(12)
    ciphertext = AESGCM(KEY_1).encrypt(nonce, plaintext, f"{ACCOUNT}:openai".encode())
    sealed = accounting_pb2.SealedSecret(key_id="k1", nonce=nonce, ciphertext=ciphertext)
    with pytest.raises(UnusableCredentialError, match=reason):
        ring().open(sealed, ACCOUNT, "openai")


def test_rotation_seals_with_the_first_key_and_reseals_what_older_keys_sealed() -> None:
    old = ring(SETTING_1).seal(SECRET, ACCOUNT, "openai")
    rotated_ring = ring(f"{SETTING_2}, {SETTING_1}")
    assert rotated_ring.active_key_id == "k2"
    assert rotated_ring.seal(SECRET, ACCOUNT, "openai").key_id == "k2"
    assert rotated_ring.open(old, ACCOUNT, "openai") == SECRET  # the old key still opens

    resealed = rotated_ring.rotate(old, ACCOUNT, "openai")
    assert resealed is not None and resealed.key_id == "k2"
    assert ring(SETTING_2).open(resealed, ACCOUNT, "openai") == SECRET  # k1 can now be retired
    assert rotated_ring.rotate(resealed, ACCOUNT, "openai") is None  # nothing left to do
    with pytest.raises(UnusableCredentialError):
        ring(SETTING_1).open(resealed, ACCOUNT, "openai")


def test_rotation_refuses_to_reseal_what_it_cannot_open() -> None:
    old = ring(SETTING_1).seal(SECRET, ACCOUNT, "openai")
    with pytest.raises(UnusableCredentialError):
        ring(f"{SETTING_2},{SETTING_1}").rotate(old, OTHER_ACCOUNT, "openai")


@pytest.mark.parametrize("setting", [None, "", "  "])
def test_without_keys_nothing_can_be_sealed_and_the_error_names_the_setting(setting: str | None) -> None:
    keyring = KeyRing.from_setting(setting)
    assert not keyring.can_seal and keyring.active_key_id is None
    with pytest.raises(OrqenError) as refused:
        keyring.seal(SECRET, ACCOUNT, "openai")
    assert refused.value.kind.grpc_code == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.value.http_status == 400
    assert KEYS_SETTING in refused.value.message


_B64_16 = base64.b64encode(bytes(16)).decode()
_B64_32 = base64.b64encode(bytes(range(100, 132))).decode()


@pytest.mark.parametrize(
    ("setting", "problem"),
    [
        ("k1", 'entry 1 is not "key_id:base64'),
        ("k1:", 'entry 1 is not "key_id:base64'),
        (f":{_B64_32}", 'entry 1 is not "key_id:base64'),
        (f"k1:{_B64_32},", 'entry 2 is not "key_id:base64'),
        ("k1:not-base64!", "key 'k1' is not valid base64"),
        (f"k1:{_B64_16}", "key 'k1' is 16 bytes; it must be 32"),
        (f"k1:{_B64_32},k1:{_B64_32}", "the key id 'k1' appears twice"),
        (f"my key:{_B64_32}", "'my key' is not a valid key id"),
    ],
)
def test_malformed_settings_fail_at_startup_without_showing_key_material(setting: str, problem: str) -> None:
    with pytest.raises(ValueError, match=KEYS_SETTING) as failed:
        KeyRing.from_setting(setting)
    assert problem in str(failed.value)
    assert _B64_32 not in str(failed.value) and _B64_16 not in str(failed.value)


def test_generated_settings_are_valid_and_random() -> None:
    first, second = generate_key_setting(), generate_key_setting()
    assert first.startswith("k1:") and first != second
    keyring = KeyRing.from_setting(first)
    assert keyring.active_key_id == "k1"
    assert keyring.open(keyring.seal(SECRET, ACCOUNT, "openai"), ACCOUNT, "openai") == SECRET
    assert generate_key_setting("2025-06").startswith("2025-06:")


# --- what an account may save ----------------------------------------------------------


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


# --- which credentials a call uses -----------------------------------------------------

_SAVED_IAM = {"access_key_id": "AKIASAVED", "secret_access_key": "saved-secret", "region": "eu-west-1"}
_SAVED_IAM_KEYS = {
    "aws_access_key_id": "AKIASAVED",
    "aws_secret_access_key": "saved-secret",
    "aws_region_name": "eu-west-1",
}


@pytest.mark.parametrize(
    ("per_request", "saved", "provider", "expected"),
    [
        # Nothing given: the provider falls back to the operator's environment.
        ({}, None, "openai", {}),
        ({}, None, "bedrock", {}),
        # The account's saved credential, mapped to the keys the provider reads.
        ({}, {"api_key": "sk-saved"}, "openai", {"api_key": "sk-saved"}),
        (
            {},
            {"api_key": "sk-saved", "base_url": "https://llm.example/v1"},
            "together",
            {"api_key": "sk-saved", "base_url": "https://llm.example/v1"},
        ),
        ({}, {**_SAVED_IAM, "session_token": "tok"}, "bedrock", {**_SAVED_IAM_KEYS, "aws_session_token": "tok"}),
        (
            {},
            {"bearer_token": "ABSKsaved", "region": "us-west-2"},
            "bedrock",
            {"aws_bearer_token_bedrock": "ABSKsaved", "aws_region_name": "us-west-2"},
        ),
        # The caller's key wins; the saved base_url still says where the provider is.
        ({"api_key": "sk-caller"}, {"api_key": "sk-saved"}, "anthropic", {"api_key": "sk-caller"}),
        (
            {"api_key": "sk-caller"},
            {"api_key": "sk-saved", "base_url": "https://llm.example/v1"},
            "together",
            {"api_key": "sk-caller", "base_url": "https://llm.example/v1"},
        ),
        # A request can never point a provider elsewhere, nor send another provider's keys.
        ({"base_url": "https://attacker.example/v1"}, {"api_key": "sk-saved"}, "openai", {"api_key": "sk-saved"}),
        ({"aws_access_key_id": "AKIACALLER", "aws_secret_access_key": "s"}, None, "openai", {}),
        # The caller's AWS keys replace the saved ones whole (never a mix), the saved region stays.
        (
            {"aws_bearer_token_bedrock": "ABSKcaller"},
            _SAVED_IAM,
            "bedrock",
            {"aws_bearer_token_bedrock": "ABSKcaller", "aws_region_name": "eu-west-1"},
        ),
        (
            {"aws_access_key_id": "AKIACALLER", "aws_secret_access_key": "caller-secret"},
            {"bearer_token": "ABSKsaved", "region": "us-west-2"},
            "bedrock",
            {
                "aws_access_key_id": "AKIACALLER",
                "aws_secret_access_key": "caller-secret",
                "aws_region_name": "us-west-2",
            },
        ),
        # Only a region from the caller: the saved keys in the caller's region.
        (
            {"aws_region_name": "ap-south-1"},
            _SAVED_IAM,
            "bedrock",
            {**_SAVED_IAM_KEYS, "aws_region_name": "ap-south-1"},
        ),
        # The provider key header for a Bedrock model is a Bedrock API key.
        (
            {"api_key": "ABSKheader"},
            _SAVED_IAM,
            "bedrock",
            {"aws_bearer_token_bedrock": "ABSKheader", "aws_region_name": "eu-west-1"},
        ),
        # Empty values count as absent.
        ({"api_key": ""}, {"api_key": "sk-saved"}, "openai", {"api_key": "sk-saved"}),
    ],
)
def test_merge_precedence(
    per_request: dict[str, str], saved: dict[str, str] | None, provider: str, expected: dict[str, str]
) -> None:
    assert merge(per_request, saved, provider) == expected


# --- providers use the call's credentials ----------------------------------------------

CHAT = ChatRequest(model="m", messages=[UserMessage(content="hi")])


class Recorder:
    """A MockTransport upstream that records each request and answers with `body`."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.requests: list[httpx.Request] = []

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handle))

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, content=orjson.dumps(self.body), headers={"content-type": "application/json"})


OPENAI_ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}
ANTHROPIC_ANSWER = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "m",
    "content": [{"type": "text", "text": "ok"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 1, "output_tokens": 1},
}
BEDROCK_ANSWER = {
    "output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}},
    "stopReason": "end_turn",
    "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
    "metrics": {"latencyMs": 1},
}


async def test_an_accounts_saved_compatible_provider_is_called_at_its_url_with_its_key() -> None:
    saved = ring().open(
        ring().seal(
            validate_secret("together", "", {"api_key": "tgp-saved-key"}, "https://llm.example/v1").sealed_fields,
            ACCOUNT,
            "together",
        ),
        ACCOUNT,
        "together",
    )
    upstream = Recorder(OPENAI_ANSWER)
    provider = OpenAICompatible("together", upstream.client(), "https://operator.example/v1", "sk-operator")
    await provider.complete(CHAT, "m", merge({}, saved, "together"))
    await provider.complete(CHAT, "m", merge({"api_key": "sk-header"}, saved, "together"))
    await provider.complete(CHAT, "m", merge({}, None, "together"))
    sent = [(str(r.url), r.headers["authorization"]) for r in upstream.requests]
    assert sent == [
        ("https://llm.example/v1/chat/completions", "Bearer tgp-saved-key"),
        ("https://llm.example/v1/chat/completions", "Bearer sk-header"),
        ("https://operator.example/v1/chat/completions", "Bearer sk-operator"),
    ]


async def test_anthropic_uses_the_saved_key_over_the_operators() -> None:
    upstream = Recorder(ANTHROPIC_ANSWER)
    provider = AnthropicMessages("anthropic", upstream.client(), "https://anthropic.test", "sk-ant-operator", 1024)
    await provider.complete(CHAT, "m", merge({}, {"api_key": "sk-ant-saved"}, "anthropic"))
    await provider.complete(CHAT, "m", merge({}, None, "anthropic"))
    assert [r.headers["x-api-key"] for r in upstream.requests] == ["sk-ant-saved", "sk-ant-operator"]


async def test_bedrock_uses_the_saved_api_key_and_region_over_the_operators_keys() -> None:
    upstream = Recorder(BEDROCK_ANSWER)
    provider = BedrockConverse(
        "bedrock", upstream.client(), None, "us-east-1", "AKIAOPERATOR", "operator-secret", None, None
    )
    saved = {"bearer_token": "ABSKsavedkey", "region": "eu-central-1"}
    await provider.complete(CHAT, "anthropic.claude-3-haiku", merge({}, saved, "bedrock"))
    request = upstream.requests[0]
    assert request.headers["authorization"] == "Bearer ABSKsavedkey"
    assert request.url.host == "bedrock-runtime.eu-central-1.amazonaws.com"
