"""Shared foundation of the Orqen services."""
