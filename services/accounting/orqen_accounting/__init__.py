"""Orqen accounting service: accounts, API keys (hashed) and the request log."""

from orqen_common import grpc_env

grpc_env.apply()  # before anything imports grpc
