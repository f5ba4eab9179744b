"""Configuration files and the strict loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli import embedded_default_config
from engine.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_configs_load() -> None:
    obs = load_config(ROOT / "config" / "observe.toml", env={})
    assert obs.mode == "observe" and obs.venue.dex == "xyz"
    assert obs.venue.ws_url.startswith("wss://api.hyperliquid.xyz")
    assert not obs.sim.enabled
    sim = load_config(ROOT / "config" / "sim.toml", env={})
    assert sim.sim.enabled and sim.followups.offsets_ms == [1000, 3000, 5000]
    assert sim.mode == "paper"
    paper = load_config(ROOT / "config" / "paper.toml", env={})
    assert paper.mode == "paper" and not paper.sim.enabled and paper.records.dir == "data/paper"


def test_embedded_default_is_config_sim_toml() -> None:
    assert embedded_default_config() == (ROOT / "config" / "sim.toml").read_text("utf-8")


def test_env_overrides_documented_keys() -> None:
    env = {"ENGINE__VENUE__WS_URL": "ws://127.0.0.1:1/ws", "ENGINE__VENUE__DEX": "abc",
           "ENGINE__VENUE__MARKETS": '["xyz:GOLD"]', "ENGINE__RECORDS__DIR": "/tmp/x",
           "ENGINE__FOLLOWUPS__OFFSETS_MS": "[500, 1500]", "ENGINE__MODE": "observe"}
    c = load_config(ROOT / "config" / "observe.toml", env=env)
    assert c.venue.ws_url == "ws://127.0.0.1:1/ws" and c.venue.dex == "abc"
    assert c.venue.markets == ["xyz:GOLD"] and c.records.dir == "/tmp/x"
    assert c.followups.offsets_ms == [500, 1500]


@pytest.mark.parametrize(("text", "needle"), [
    ("[venue]\nfoo = 1", "[venue] foo: unknown key"),
    ("[nope]\nx = 1", "nope: unknown key"),
    ("[venue]\nping_idle_s = \"x\"", "[venue] ping_idle_s: expected a number"),
    ("[venue]\nping_idle_s = 0", "ping_idle_s must be > 0"),
    ("[venue]\nmarkets = \"xyz:GOLD\"", "[venue] markets"),
    ("mode = \"live\"", "mode must be one of"),
    ("[followups]\noffsets_ms = [3000, 1000]", "[followups] offsets_ms must be strictly"),
    ("[detector]\nsession_timezone = \"Mars/Base\"", "unknown session_timezone"),
    ("[detector]\nmax_quote_lag_ms = 10\nmin_quote_lag_ms = 30", "max_quote_lag_ms"),
    ("[sizing]\nmax_notional = 5", "max_notional"),
    ("[records]\ndir = 5", "[records] dir: expected a string"),
    ("[detector]\noracle_direction_filter = 1", "expected true or false"),
    ("[venue\n", "not valid TOML"),
])
def test_errors_name_the_key(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, env={}, defaults=text)
    assert needle in str(e.value)


def test_missing_file_and_env_name_in_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "x.toml", env={})
    with pytest.raises(ConfigError, match="ENGINE__VENUE__NOPE"):
        load_config(None, env={"ENGINE__VENUE__NOPE": "1"}, defaults="")


def test_config_with_a_private_key_is_refused(tmp_path: Path) -> None:
    """The predecessor committed private keys in its config files: never again."""
    key = "ab" * 32
    cfg = tmp_path / "trade.toml"
    cfg.write_text(f'[venue]\ndex = "xyz"\n# agent_key = "0x{key}"\n')
    with pytest.raises(ConfigError) as e:
        load_config(cfg, env={})
    msg = str(e.value)
    assert "line 3" in msg and "ENGINE_AGENT_KEY" in msg and key not in msg


def test_env_override_keeps_hex_addresses_as_strings() -> None:
    addr = "0x1111111111111111111111111111111111111111"
    c = load_config(None, env={"ENGINE__ACCOUNT__ADDRESS": addr}, defaults="")
    assert c.account.address == addr


@pytest.mark.parametrize("mode", ["observe", "paper", "trade"])
def test_default_records_dir_depends_on_mode_and_venue(mode: str) -> None:
    """Paper, trade and observe runs on the simulator never share a journal."""
    sim = load_config(None, env={"ENGINE__MODE": mode}, defaults=embedded_default_config())
    assert sim.records.dir == f"data/sim/{mode}"
    main = load_config(None, env={"ENGINE__MODE": mode}, defaults="")
    assert main.records.dir == f"data/mainnet/{mode}"
    test = load_config(None, env={"ENGINE__MODE": mode, "ENGINE__VENUE__WS_URL":
                                  "wss://api.hyperliquid-testnet.xyz/ws"}, defaults="")
    assert test.records.dir == f"data/testnet/{mode}"
    local = load_config(None, env={"ENGINE__MODE": mode, "ENGINE__VENUE__WS_URL":
                                   "ws://127.0.0.1:8080/ws"}, defaults="")
    assert local.records.dir == f"data/127.0.0.1-8080/{mode}"
    explicit = load_config(None, env={"ENGINE__MODE": mode, "ENGINE__RECORDS__DIR": "/x/y"},
                           defaults=embedded_default_config())
    assert explicit.records.dir == "/x/y"


def test_env_override_names_are_case_insensitive() -> None:
    cfg = load_config(None, env={"engine__venue__dex": "abc", "Engine__Summary__Interval_S": "7",
                                 "engine__mode": "observe"}, defaults=embedded_default_config())
    assert cfg.venue.dex == "abc" and cfg.summary.interval_s == 7.0 and cfg.mode == "observe"


@pytest.mark.parametrize(("name", "needle"), [
    ("ENGINE__SUMMARY", "[summary] is a section, not a key"),
    ("engine__venue", "[venue] is a section, not a key"),
    ("ENGINE__MODE__X", "mode is a key, not a section"),
    ("ENGINE__VENUE__DEX__X", "[venue] dex is a key, not a section"),
])
def test_env_override_of_a_section_or_below_a_key_is_refused(name: str, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, env={name: "5"}, defaults=embedded_default_config())
    assert name in str(e.value) and needle in str(e.value)
    assert "iterable" not in str(e.value)
