"""Fake upstream providers that speak, and validate, each provider's real wire format."""
