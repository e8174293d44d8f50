from datetime import UTC, datetime

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as AwsKeys

from orqen_dispatch.providers.sigv4 import sigv4_headers

NOW = datetime(2026, 12, 4, 23, 59, 58, tzinfo=UTC)
RUNTIME = "https://bedrock-runtime.us-east-1.amazonaws.com"
CONTROL = "https://bedrock.eu-central-1.amazonaws.com"
ARN = "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-haiku"


def botocore_headers(
    method: str, url: str, body: bytes, keys: AwsKeys, region: str, content_type: str
) -> dict[str, str]:
    """What boto3 sends: botocore's own SigV4Auth at the same instant."""
    request = AWSRequest(
        method=method, url=url, data=body, headers={"Content-Type": content_type} if content_type else {}
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("botocore.auth.get_current_datetime", lambda: NOW)
        SigV4Auth(keys, "bedrock", region).add_auth(request)
    return dict(request.headers.items())


@pytest.mark.parametrize(
    ("method", "url", "body", "content_type"),
    [
        ("POST", f"{RUNTIME}/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
         b'{"messages":[]}', "application/json"),
        ("POST", f"{RUNTIME}/model/{ARN}/converse-stream", b"{}", "application/json"),
        ("GET", f"{CONTROL}/inference-profiles?typeEquals=SYSTEM_DEFINED&maxResults=1000",
         b"", ""),
        ("GET", f"{CONTROL}/foundation-models", b"", ""),
        ("POST", "http://127.0.0.1:8443/model/m%20x/converse", b'{"a": "\\u00e9"}', "application/json"),
        ("POST", "https://Bedrock-Runtime.example.com:443/./model//m/../m/converse", b"{}", "application/json"),
        ("GET", "http://[::1]:9000/foundation-models?b=2&a=1&a=0", b"", ""),
    ],
)  # fmt: skip
@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEJr//session token"])
def test_the_headers_are_botocores_byte_for_byte(
    method: str, url: str, body: bytes, content_type: str, token: str | None
) -> None:
    keys = AwsKeys("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    ours = sigv4_headers(method, url, body, keys, "eu-west-3", "bedrock", content_type, now=NOW)
    assert ours == botocore_headers(method, url, body, keys, "eu-west-3", content_type)


def test_a_new_day_signs_with_that_days_key() -> None:
    keys = AwsKeys("AKIDEXAMPLE", "secret")
    url = "https://bedrock.us-east-1.amazonaws.com/foundation-models"
    today = sigv4_headers("GET", url, b"", keys, "us-east-1", "bedrock", now=NOW)
    tomorrow = sigv4_headers("GET", url, b"", keys, "us-east-1", "bedrock", now=datetime(2026, 12, 5, tzinfo=UTC))
    assert "/20261204/" in today["Authorization"] and "/20261205/" in tomorrow["Authorization"]
    assert today["Authorization"].rsplit("=", 1)[1] != tomorrow["Authorization"].rsplit("=", 1)[1]
