"""The optional [funding] and [bybit] sections (issue 11): absent by default, strict when
present (errors name the key), mainnet refused without allow_live."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent


def load_text(tmp_path: Path, text: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    p = tmp_path / "c.toml"
    p.write_text(text)
    return load_config(p, env=env or {})


def test_existing_configs_keep_working_without_the_sections() -> None:
    for name in ("observe.toml", "sim.toml", "paper.toml"):
        c = load_config(ROOT / "config" / name, env={})
        assert c.funding is None and c.bybit is None


def test_funding_section_structures_with_defaults(tmp_path: Path) -> None:
    c = load_text(tmp_path, '[funding]\nsymbols = ["SOLUSDT"]\nmin_expected_apr = 0.1\n'
                            'hold_across_events = false\n[bybit]\n')
    assert c.funding is not None and c.funding.symbols == ["SOLUSDT"]
    assert c.funding.min_expected_apr == 0.1 and c.funding.pre_event_open_minutes == 60.0
    assert c.funding.hold_across_events is False and c.funding.negative_funding == "spot_inventory"
    assert c.bybit is not None and c.bybit.environment == "testnet" and not c.bybit.allow_live


def test_env_override_reaches_the_funding_section(tmp_path: Path) -> None:
    c = load_text(tmp_path, "[funding]\n", {"ENGINE__FUNDING__REBALANCE_BAND_BPS": "12.5"})
    assert c.funding is not None and c.funding.rebalance_band_bps == 12.5


@pytest.mark.parametrize("text,needle", [
    ("[funding]\nbogus = 1\n", "[funding] bogus: unknown key"),
    ("[funding]\nrebalance_band_bps = -1\n", "rebalance_band_bps must be within"),
    ('[funding]\nnegative_funding = "yes"\n', "negative_funding must be one of"),
    ("[funding]\nexit_apr = 0.5\n", "exit_apr (0.5) must be <= min_expected_apr"),
    ('[funding]\nsymbols = "BTCUSDT"\n', "[funding] symbols: expected a list"),
    ('[bybit]\nenvironment = "mainnet"\n', "needs allow_live = true"),
    ('[bybit]\nenvironment = "prod"\n', "environment must be one of testnet, mainnet"),
])
def test_bad_values_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_text(tmp_path, text)
    assert needle in str(e.value)


def test_mainnet_with_allow_live(tmp_path: Path) -> None:
    c = load_text(tmp_path, '[bybit]\nenvironment = "mainnet"\nallow_live = true\n')
    assert c.bybit is not None and c.bybit.environment == "mainnet"
