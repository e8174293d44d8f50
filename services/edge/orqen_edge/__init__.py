"""Orqen edge: the only HTTP entry of the stack."""
