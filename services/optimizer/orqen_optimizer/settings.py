"""Optimizer settings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from orqen_common.settings import (
    AccountingAddress,
    OptimizerAddress,
    RedisSettings,
    ServiceSettings,
    ToolLearningSettings,
)


class OptimizerSettings(ServiceSettings, OptimizerAddress, AccountingAddress, RedisSettings, ToolLearningSettings):
    """Configuration of the optimizer service; it calls accounting (API keys, routing preferences)."""

    metrics_port: int = Field(9151, description="Port of the Prometheus metrics endpoint; 0 disables it.")
    optimizer_workers: int = Field(
        0,
        ge=0,
        description="Worker processes planning on the optimizer's port, each with its own model; 0: one per CPU "
        "available to the process (its affinity mask, capped by a container's CPU limit).",
    )
    optimizer_model_turns: int = Field(
        2,
        ge=0,
        description="Plans of one worker that run the embedding model at once. The others wait for a turn while "
        "they can still finish before their caller's deadline; a plan that cannot is ranked by keywords "
        "(mode keyword_busy) rather than fail open. 0: no turns, every plan runs the model when it comes.",
    )
    model_cache_dir: Path | None = Field(
        None,
        description="Directory of the embedding model's ONNX graph, exported there once (by the first worker, "
        "under a file lock) when missing; unset: ~/.cache/orqen ($XDG_CACHE_HOME/orqen). The image ships one.",
    )
    embedding_precision: Literal["int8", "float32"] = Field(
        "int8",
        description="The embedding model's graph the workers run: its int8 form (about half the CPU per embedding) "
        "or the float graph it is quantised from. Each keeps its own tool vectors in Redis.",
    )
    tool_routing: bool = Field(
        True, description="Forward only the tools a request needs; off: every tool is forwarded."
    )
    ab_control_share: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Share of routed requests sent with every tool, to measure the router's recall, when an "
        "account's routing preferences cannot be read (each account's own share is in its preferences).",
    )
    routing_max_new_tools: int = Field(
        4, ge=0, description="Unseen tools a request may embed itself; more are indexed in the background."
    )
    max_tool_texts_indexed_per_request: int = Field(
        256,
        ge=0,
        description="Tool texts (a tool's description, each of its examples) one request may queue for background "
        "indexing; the rest wait for later requests that carry them.",
    )
    tool_indexing_queue: int = Field(
        2048, ge=0, description="Most tool texts waiting for background indexing, across all requests."
    )
    learned_tools_max: int = Field(
        3, ge=0, description="Tools a plan may forward beyond the router's K because learned tool usage expects them."
    )
    learned_tools_timeout_ms: float = Field(
        50.0,
        gt=0,
        description="Longest wait for the one Redis read of an account's learned tool usage; the plan goes on "
        "without it after that (and skips it for 5 seconds).",
    )
