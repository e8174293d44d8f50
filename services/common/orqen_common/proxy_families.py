"""The stateless proxy families: OpenAI-style endpoints Orqen forwards as they are, beside chat.

One table shared by the edge (which paths it serves, how it reads each body) and dispatch
(which path it calls upstream, which providers offer the family). A family's name is its
path under `/v1`, which is also its path under an OpenAI-compatible base URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

BodyKind = Literal["json", "multipart"]


@dataclass(frozen=True, slots=True)
class ProxyFamily:
    """One endpoint family."""

    name: str  # the path under /v1 and under an upstream's base URL: "audio/transcriptions"
    body: BodyKind
    # False where OpenAI's API has a default model (moderations, images): the upstream picks it.
    model_required: bool = True
    # Other paths that reach it under the Orq.ai-compatible bases (Orq.ai names speech "/speech").
    aliases: tuple[str, ...] = ()
    # Whether /v2/proxy and /v3/router serve it (Orq.ai's list has no OCR or video).
    orq_compatible: bool = True


FAMILIES: tuple[ProxyFamily, ...] = (
    ProxyFamily("completions", "json"),
    ProxyFamily("embeddings", "json"),
    ProxyFamily("responses", "json"),
    ProxyFamily("images/generations", "json", model_required=False),
    ProxyFamily("images/edits", "multipart", model_required=False),
    ProxyFamily("images/variations", "multipart", model_required=False),
    ProxyFamily("audio/transcriptions", "multipart"),
    ProxyFamily("audio/translations", "multipart"),
    ProxyFamily("audio/speech", "json", aliases=("speech",)),
    ProxyFamily("moderations", "json", model_required=False),
    ProxyFamily("rerank", "json"),
    ProxyFamily("ocr", "json", orq_compatible=False),
    ProxyFamily("videos/generations", "json", orq_compatible=False),
)
BY_NAME = {family.name: family for family in FAMILIES}

# Base paths that serve the families: Orqen's own, and Orq.ai's proxy and AI Router.
OPENAI_BASE = "/v1"
ORQ_BASES = ("/v2/proxy", "/v3/router")

# Object-lifecycle APIs need storage ownership and provider-specific semantics: never blind pass-through.
NOT_PROXIED = ("files", "uploads", "batches", "vector_stores", "assistants", "threads", "containers", "evals")


def family(name: str) -> ProxyFamily | None:
    """The family named `name`, or None."""
    return BY_NAME.get(name)


def paths(entry: ProxyFamily) -> list[str]:
    """Every HTTP path the edge serves `entry` on."""
    out = [f"{OPENAI_BASE}/{entry.name}"]
    if entry.orq_compatible:
        out += [f"{base}/{name}" for base in ORQ_BASES for name in (entry.name, *entry.aliases)]
    return out


def ingress(entry: ProxyFamily) -> str:
    """The request log's ingress for a proxied request ("proxy/embeddings")."""
    return f"proxy/{entry.name}"
