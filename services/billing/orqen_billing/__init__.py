"""Orqen billing service: plans, metered usage and the projected charge."""

from orqen_common import grpc_env

grpc_env.apply()  # before anything imports grpc
