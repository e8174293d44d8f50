"""Orqen dispatch service: sends canonical chat requests to providers and translates back."""

from orqen_common import grpc_env

grpc_env.apply()  # before anything imports grpc
