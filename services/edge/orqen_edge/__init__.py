"""Orqen edge: the only HTTP entry of the stack."""

from orqen_common import grpc_env

grpc_env.apply()  # before anything imports grpc
