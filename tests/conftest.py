"""Shared pytest configuration (Trio mode is enabled in pyproject.toml)."""

import os

# Engines started by tests (in-process or as `python -m engine` subprocesses, which inherit the
# environment) bind their ops endpoint to an ephemeral port, never the operator's default 9321:
# tests run in parallel with each other and with a real engine on the same machine.
os.environ.setdefault("ENGINE__OPS__HTTP_PORT", "0")
