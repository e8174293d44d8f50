"""Orqen dispatch service: sends canonical chat requests to providers and translates back."""
