"""Optimizer settings."""

from __future__ import annotations

from pydantic import Field

from orqen_common.settings import RedisSettings, ServiceSettings


class OptimizerSettings(ServiceSettings, RedisSettings):
    """Configuration of the optimizer service."""

    metrics_port: int = Field(9151, description="Port of the Prometheus metrics endpoint; 0 disables it.")
