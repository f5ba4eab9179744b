"""Shared pytest configuration (Trio mode is enabled in pyproject.toml)."""
