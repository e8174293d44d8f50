"""Test support for Orqen: real servers for every test tier, isolated per test."""
