"""Orqen billing service: plans, metered usage and the projected charge."""
