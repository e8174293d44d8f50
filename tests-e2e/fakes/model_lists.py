"""What the fake providers list, in each provider's own model-list format.

- OpenAI `GET /v1/models`: `{"object": "list", "data": [Model]}` (the openai SDK's `Model`).
- Anthropic `GET /v1/models`: pages of `ModelInfo` with `has_more`, `first_id`, `last_id`,
  by `limit` (1-1000, default 20), `after_id` and `before_id`, newest first.
- Bedrock `GET /foundation-models` (ListFoundationModels, filters `byOutputModality`,
  `byInferenceType`, `byProvider`) and `GET /inference-profiles` (ListInferenceProfiles,
  `maxResults` 1-1000 and `nextToken`), in botocore's `bedrock` output shapes.
"""

from __future__ import annotations

from typing import Any

from anthropic.types import ModelInfo as AnthropicModel
from openai.types import Model as OpenAIModel

_CREATED = 1_715_367_049  # any fixed time: the lists are the same on every run

OPENAI_MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-5-mini",
    "o4-mini",
    "text-embedding-3-small",
    "dall-e-3",
    "whisper-1",
    "tts-1",
    "omni-moderation-latest",
)
# (id, display name, released, lifecycle, image input, max input tokens, max output tokens)
ANTHROPIC_MODELS = (
    ("claude-opus-4-5", "Claude Opus 4.5", "2025-11-24T00:00:00Z", "active", True, 200_000, 64_000),
    ("claude-sonnet-4-6", "Claude Sonnet 4.6", "2025-11-20T00:00:00Z", "active", True, 1_000_000, 64_000),
    ("claude-haiku-4-5", "Claude Haiku 4.5", "2025-10-15T00:00:00Z", "active", True, 200_000, 64_000),
    ("claude-sonnet-4-5", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z", "active", True, 200_000, 64_000),
    ("claude-3-5-haiku-20241022", "Claude Haiku 3.5", "2024-10-22T00:00:00Z", "deprecated", False, 200_000, 8_192),
)
# (modelId, provider, input modalities, output modalities, inference types, lifecycle)
BEDROCK_MODELS = (
    ("amazon.nova-micro-v1:0", "Amazon", ["TEXT"], ["TEXT"], ["ON_DEMAND"], "ACTIVE"),
    ("amazon.nova-lite-v1:0", "Amazon", ["TEXT", "IMAGE", "VIDEO"], ["TEXT"], ["ON_DEMAND"], "ACTIVE"),
    ("anthropic.claude-3-haiku-20240307-v1:0", "Anthropic", ["TEXT", "IMAGE"], ["TEXT"], ["ON_DEMAND"], "ACTIVE"),
    ("anthropic.claude-3-5-sonnet-20240620-v1:0", "Anthropic", ["TEXT", "IMAGE"], ["TEXT"], ["ON_DEMAND"], "LEGACY"),
    # Callable only through an inference profile (listed below), as the newer Claude models are.
    ("anthropic.claude-sonnet-4-20250514-v1:0", "Anthropic", ["TEXT", "IMAGE"], ["TEXT"], ["INFERENCE_PROFILE"],
     "ACTIVE"),
    ("meta.llama3-1-8b-instruct-v1:0", "Meta", ["TEXT"], ["TEXT"], ["ON_DEMAND"], "ACTIVE"),
    ("amazon.titan-embed-text-v2:0", "Amazon", ["TEXT"], ["EMBEDDING"], ["ON_DEMAND"], "ACTIVE"),
)  # fmt: skip
BEDROCK_PROFILES = (("us.anthropic.claude-sonnet-4-20250514-v1:0", "anthropic.claude-sonnet-4-20250514-v1:0"),)


def openai_list(models: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """GET /v1/models as OpenAI answers it, each entry built as the SDK's `Model`."""
    data = [OpenAIModel(id=m, object="model", created=_CREATED, owned_by=_owner(m)).model_dump() for m in models]
    return {"object": "list", "data": data}


def anthropic_page(query: dict[str, str]) -> dict[str, Any] | str:
    """One page of GET /v1/models, or the message of the 400 Anthropic answers for a bad query."""
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        return "limit: Input should be a valid integer"
    if not 1 <= limit <= 1000:
        return "limit: Input should be between 1 and 1000"
    ids = [m[0] for m in ANTHROPIC_MODELS]
    start, end = 0, len(ids)
    if "after_id" in query:
        if query["after_id"] not in ids:
            return f"after_id: no model {query['after_id']!r}"
        start = ids.index(query["after_id"]) + 1
    if "before_id" in query:
        if query["before_id"] not in ids:
            return f"before_id: no model {query['before_id']!r}"
        end = ids.index(query["before_id"])
        start = max(start, end - limit)
    page = ANTHROPIC_MODELS[start : min(end, start + limit)]
    data = [_anthropic_model(*entry).model_dump(mode="json") for entry in page]
    return {
        "data": data,
        # More in the direction asked: earlier entries when paging back with before_id.
        "has_more": start > 0 if "before_id" in query else start + len(page) < end,
        "first_id": page[0][0] if page else None,
        "last_id": page[-1][0] if page else None,
    }


def _anthropic_model(
    model_id: str, name: str, released: str, lifecycle: str, images: bool, max_input: int, max_output: int
) -> AnthropicModel:
    """One entry as the current API sends it: capabilities, limits and lifecycle included."""
    yes, no = {"supported": True}, {"supported": False}
    levels = {"low": yes, "medium": yes, "high": yes, "max": no, "supported": True}
    thinking = {"supported": True, "types": {"adaptive": no, "between_tools": no, "disabled": yes, "enabled": yes}}
    capabilities = {
        "batch": yes,
        "citations": yes,
        "code_execution": no,
        "context_management": {"supported": False},
        "effort": levels,
        "image_input": yes if images else no,
        "pdf_input": yes if images else no,
        "server_tools": {"supported": True, "code_execution": no, "web_search": yes},
        "structured_outputs": yes,
        "thinking": thinking,
    }
    return AnthropicModel.model_validate(
        {
            "id": model_id,
            "type": "model",
            "display_name": name,
            "created_at": released,
            "lifecycle": lifecycle,
            "deprecated_at": released if lifecycle != "active" else None,
            "capabilities": capabilities,
            "max_input_tokens": max_input,
            "max_tokens": max_output,
        }
    )


def foundation_models(query: dict[str, str]) -> dict[str, Any]:
    """ListFoundationModels' output, filtered as its query parameters say."""
    summaries = []
    for model_id, provider, inputs, outputs, inference, lifecycle in BEDROCK_MODELS:
        if "byOutputModality" in query and query["byOutputModality"] not in outputs:
            continue
        if "byInferenceType" in query and query["byInferenceType"] not in inference:
            continue
        if "byProvider" in query and query["byProvider"].lower() != provider.lower():
            continue
        summaries.append(
            {
                "modelArn": _model_arn(model_id),
                "modelId": model_id,
                "modelName": model_id.split(".", 1)[1],
                "providerName": provider,
                "inputModalities": inputs,
                "outputModalities": outputs,
                "responseStreamingSupported": "TEXT" in outputs,
                "customizationsSupported": [],
                "inferenceTypesSupported": inference,
                "modelLifecycle": {"status": lifecycle},
            }
        )
    return {"modelSummaries": summaries}


def inference_profiles(query: dict[str, str]) -> dict[str, Any] | str:
    """One page of ListInferenceProfiles' output, or the ValidationException message of a bad query."""
    try:
        size = int(query.get("maxResults", "1000"))
        start = int(query.get("nextToken", "0"))
    except ValueError:
        return "1 validation error detected: Value at 'maxResults' or 'nextToken' failed to satisfy constraint"
    if not 1 <= size <= 1000:
        return "1 validation error detected: Value at 'maxResults' failed to satisfy constraint"
    page = BEDROCK_PROFILES[start : start + size]
    summaries = [
        {
            "inferenceProfileName": f"US {model_id}",
            "description": f"Routes requests to {model_id} in US regions.",
            "createdAt": "2025-05-22T00:00:00Z",
            "updatedAt": "2025-05-22T00:00:00Z",
            "inferenceProfileArn": f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/{profile_id}",
            "models": [{"modelArn": _model_arn(model_id, region)} for region in ("us-east-1", "us-west-2")],
            "inferenceProfileId": profile_id,
            "status": "ACTIVE",
            "type": "SYSTEM_DEFINED",
        }
        for profile_id, model_id in page
    ]
    more = start + size < len(BEDROCK_PROFILES)
    return {"inferenceProfileSummaries": summaries, **({"nextToken": str(start + size)} if more else {})}


def _model_arn(model_id: str, region: str = "us-east-1") -> str:
    return f"arn:aws:bedrock:{region}::foundation-model/{model_id}"


def _owner(model: str) -> str:
    return "openai-internal" if model.startswith(("whisper", "tts")) else "system"
