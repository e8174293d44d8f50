"""Orqen accounting service: accounts, API keys (hashed) and the request log."""
