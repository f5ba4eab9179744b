"""A small simulator recording shared by the replay tests (written once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.sim.record import record


@pytest.fixture(scope="session")
def sim_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("simrec")
    record(d, seconds=60.0, seed=3, n_markets=12)
    return d
