"""Shared pytest configuration (Trio mode is enabled in pyproject.toml)."""

import os

# Engines started by tests (in-process or as `python -m engine` subprocesses, which inherit the
# environment) bind their ops endpoint to an ephemeral port, never the operator's default 9321:
# tests run in parallel with each other and with a real engine on the same machine.
os.environ.setdefault("ENGINE__OPS__HTTP_PORT", "0")


def pytest_configure(config):  # type: ignore[no-untyped-def]
    config.addinivalue_line(
        "markers", "property: a Hypothesis property test (set automatically; `python -m engine "
        "check` runs `-m property`)")


def pytest_collection_modifyitems(config, items):  # type: ignore[no-untyped-def]
    """Mark every Hypothesis test (``@given`` and stateful machines) ``property``."""
    import pytest
    from hypothesis import is_hypothesis_test

    for item in items:
        fn = getattr(item, "obj", None)
        cls = getattr(item, "cls", None)
        stateful = cls is not None and getattr(cls, "__module__", "") == "hypothesis.stateful"
        if stateful or (fn is not None and is_hypothesis_test(fn)):
            item.add_marker(pytest.mark.property)
