"""Orqen optimizer service: builds the optimization plan of a chat request."""
