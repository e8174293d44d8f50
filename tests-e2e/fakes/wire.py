"""Wire-format helpers shared by the fake providers: request validation, SSE, AWS SigV4.

The fakes validate with the providers' own definitions (the openai and anthropic SDKs'
request types, botocore's service model) so that a request a fake accepts is one the
real API would accept, and the fakes need no schema of their own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.model import Shape
from botocore.validate import ParamValidator
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

# --- SDK request types (OpenAI, Anthropic) -----------------------------------------------------


def strict_adapter(request_type: Any) -> TypeAdapter[Any]:
    """A validator for an SDK's request TypedDict that, like the real APIs, refuses unknown fields.

    pydantic takes no config for a TypedDict itself, so the type is wrapped in a list.
    """
    return TypeAdapter(list[request_type], config=ConfigDict(extra="forbid"))


def validate_typed_dict(adapter: TypeAdapter[Any], body: Any) -> str | None:
    """None when `body` is valid for the request type of `strict_adapter`; otherwise what is wrong."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    try:
        validated = materialize(adapter.validate_python([body]))
    except ValidationError as err:
        return _summary(err)
    extra = next(_extra_fields(validated[0], ""), None)
    return f"{extra}: Extra inputs are not permitted" if extra else None


def materialize(value: Any) -> Any:
    """Consume pydantic's lazy iterable validators so every nested item is really validated."""
    if isinstance(value, dict):
        return {k: materialize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [materialize(v) for v in value]
    if isinstance(value, Iterator):
        return [materialize(v) for v in value]
    return value


def _extra_fields(value: Any, path: str) -> Iterator[str]:
    """Unknown fields that a union's response-model member (which allows extras) took in."""
    if isinstance(value, BaseModel):
        for name in value.model_extra or {}:
            yield f"{path}.{name}".lstrip(".")
        for name in type(value).model_fields:
            yield from _extra_fields(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _extra_fields(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _extra_fields(item, f"{path}.{index}")


def _summary(err: ValidationError) -> str:
    """The first few problems, an unknown field first (a union reports every member it tried)."""
    errors = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")
    lines = [f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in errors[:3]]
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(lines) + more


# --- Server-sent events (OpenAI, Anthropic) ----------------------------------------------------


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event; `data` is JSON-encoded unless it is already bytes."""
    payload = data if isinstance(data, bytes) else orjson.dumps(data)
    prefix = f"event: {event}\n".encode() if event else b""
    return prefix + b"data: " + payload + b"\n\n"


# --- AWS (Bedrock) -----------------------------------------------------------------------------


class AwsError(Exception):
    """An AWS error: its name (the x-amzn-errortype), HTTP status and message."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code, self.status, self.message = code, status, message


_SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)
_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<credential>[^,\s]+),\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)


def verify_sigv4(
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    secret_keys: Mapping[str, str],
    service: str,
) -> str:
    """Check a SigV4-signed request by signing it again with botocore; the region it was signed for.

    `url` must carry the path exactly as received (still percent-encoded) and `headers`
    must have lower-case names. Raises `AwsError` with AWS's own error names.
    """
    match = _AUTHORIZATION.match(headers.get("authorization", ""))
    if match is None:
        raise AwsError(
            "IncompleteSignatureException",
            403,
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters.",
        )
    scope = match["credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise AwsError("IncompleteSignatureException", 403, f"Credential is malformed: {match['credential']}")
    access_key, _date, region, scope_service, _ = scope
    if access_key not in secret_keys:
        raise AwsError("UnrecognizedClientException", 403, "The security token included in the request is invalid.")
    if scope_service != service:
        message = f"Credential should be scoped to correct service: '{service}'."
        raise AwsError("InvalidSignatureException", 403, message)
    timestamp = headers.get("x-amz-date")
    signed = match["signed"].split(";")
    if timestamp is None or "host" not in signed:
        raise AwsError(
            "IncompleteSignatureException", 403, "The request must sign the host header and carry X-Amz-Date."
        )
    if any(name not in headers for name in signed) or not _payload_hash_matches(headers, body):
        raise AwsError("InvalidSignatureException", 403, _SIGNATURE_MISMATCH)
    # Rebuild the request as the client signed it: only the headers it says it signed.
    request = AWSRequest(method=method, url=url, headers={name: headers[name] for name in signed}, data=body)
    request.context["timestamp"] = timestamp
    signer = SigV4Auth(Credentials(access_key, secret_keys[access_key]), service, region)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    same_headers = signer.signed_headers(signer.headers_to_sign(request)) == match["signed"]
    if not (same_headers and hmac.compare_digest(expected, match["signature"])):
        raise AwsError("InvalidSignatureException", 403, _SIGNATURE_MISMATCH)
    return region


def _payload_hash_matches(headers: Mapping[str, str], body: bytes) -> bool:
    """A declared body hash must be the body's (otherwise the signature would not cover the body)."""
    declared = headers.get("x-amz-content-sha256")
    return declared is None or declared == hashlib.sha256(body).hexdigest()


def validate_aws_params(shape: Shape, params: dict[str, Any]) -> dict[str, Any]:
    """`params` (parsed JSON) checked against a botocore input shape, with blobs decoded to bytes.

    On the wire a blob is base64 text; botocore's validator wants the bytes the SDK user
    passed. Unknown keys, missing required members and wrong types are all reported.
    """
    decoded = _decode_blobs(shape, params, "")
    report = ParamValidator().validate(decoded, shape)
    if report.has_errors():
        raise AwsError("ValidationException", 400, report.generate_report())
    return decoded  # type: ignore[no-any-return]


def _decode_blobs(shape: Shape, value: Any, path: str) -> Any:
    if shape.metadata.get("document"):  # free-form JSON: nothing in it is a blob
        return value
    if shape.type_name == "blob" and isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise AwsError("ValidationException", 400, f"{path.lstrip('.')}: invalid base64 blob") from None
    if shape.type_name == "structure" and isinstance(value, dict):
        return {
            key: _decode_blobs(shape.members[key], item, f"{path}.{key}") if key in shape.members else item
            for key, item in value.items()
        }
    if shape.type_name == "list" and isinstance(value, list):
        return [_decode_blobs(shape.member, item, f"{path}.{i}") for i, item in enumerate(value)]
    if shape.type_name == "map" and isinstance(value, dict):
        return {key: _decode_blobs(shape.value, item, f"{path}.{key}") for key, item in value.items()}
    return value
