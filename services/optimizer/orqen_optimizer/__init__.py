"""Orqen optimizer service: builds the optimization plan of a chat request."""

from orqen_common import grpc_env

grpc_env.apply()  # before anything imports grpc
