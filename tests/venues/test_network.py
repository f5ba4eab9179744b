"""Issue 9 item 11: one explicit network setting, ``[venue] network``, decides both the
``allow_live`` gate and the signing chain, validated against the URLs and the discovered venue.

The table covers every network (unset, mainnet, testnet, sim) × venue URL (embedded simulator,
official mainnet host, official testnet host, loopback, any other host) × discovered venue (the
engine's simulator or not); the expected outcome of each row is written out by hand.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import trio

from engine.app import EXIT_CONFIG, StartupError
from engine.config import ConfigError, structure_config
from engine.sim.server import SimExchange
from engine.trading_app import TradingApp, is_real_mainnet
from engine.venues.hyperliquid.network import (
    NetworkError,
    check_discovered,
    host_class,
    needs_discovery_check,
    probe_simulator,
)

KEY = "0x0123456789012345678901234567890123456789012345678901234567890123"
MASTER = "0x1111111111111111111111111111111111111111"

URLS: dict[str, tuple[str, str]] = {
    "embedded": ("wss://api.hyperliquid.xyz/ws", "https://api.hyperliquid.xyz/info"),  # ignored
    "mainnet_host": ("wss://api.hyperliquid.xyz/ws", "https://api.hyperliquid.xyz/info"),
    "testnet_host": ("wss://api.hyperliquid-testnet.xyz/ws",
                     "https://api.hyperliquid-testnet.xyz/info"),
    "loopback": ("ws://127.0.0.1:9/ws", "http://127.0.0.1:9/info"),
    "other_host": ("wss://node.example.com/ws", "https://node.example.com/info"),
}

M = ("mainnet", True, True)  # (network, signs with the mainnet source "a", needs allow_live)
T = ("testnet", False, False)
S = ("sim", True, False)
ERR = "error"

# (network, url, discovered venue is the simulator) -> outcome
TABLE: dict[tuple[str, str, bool], Any] = {
    # unset: implied by [sim] enabled or the official host only
    ("", "embedded", True): S, ("", "embedded", False): S,  # the engine started it: not probed
    ("", "mainnet_host", True): M, ("", "mainnet_host", False): M,  # official host: not probed
    ("", "testnet_host", True): T, ("", "testnet_host", False): T,
    ("", "loopback", True): ERR, ("", "loopback", False): ERR,
    ("", "other_host", True): ERR, ("", "other_host", False): ERR,
    # mainnet: any host but the testnet one; never the simulator
    ("mainnet", "embedded", True): ERR, ("mainnet", "embedded", False): ERR,
    ("mainnet", "mainnet_host", True): M, ("mainnet", "mainnet_host", False): M,
    ("mainnet", "testnet_host", True): ERR, ("mainnet", "testnet_host", False): ERR,
    ("mainnet", "loopback", True): ERR, ("mainnet", "loopback", False): M,
    ("mainnet", "other_host", True): ERR, ("mainnet", "other_host", False): M,
    # testnet: any host but the mainnet one; never the simulator
    ("testnet", "embedded", True): ERR, ("testnet", "embedded", False): ERR,
    ("testnet", "mainnet_host", True): ERR, ("testnet", "mainnet_host", False): ERR,
    ("testnet", "testnet_host", True): T, ("testnet", "testnet_host", False): T,
    ("testnet", "loopback", True): ERR, ("testnet", "loopback", False): T,
    ("testnet", "other_host", True): ERR, ("testnet", "other_host", False): T,
    # sim: the embedded simulator, or loopback URLs answered by the simulator
    ("sim", "embedded", True): S, ("sim", "embedded", False): S,
    ("sim", "mainnet_host", True): ERR, ("sim", "mainnet_host", False): ERR,
    ("sim", "testnet_host", True): ERR, ("sim", "testnet_host", False): ERR,
    ("sim", "loopback", True): S, ("sim", "loopback", False): ERR,
    ("sim", "other_host", True): ERR, ("sim", "other_host", False): ERR,
}


def test_the_table_covers_every_combination() -> None:
    assert set(TABLE) == {(n, u, d) for n in ("", "mainnet", "testnet", "sim") for u in URLS
                          for d in (True, False)}


def trade_cfg(network: str, url: str, records: Path | None = None, **trading: Any) -> Any:
    ws, info = URLS[url]
    return structure_config({
        "mode": "trade", "account": {"address": MASTER},
        "records": {"dir": str(records) if records is not None else "data"},
        "venue": {"network": network, "ws_url": ws, "info_url": info},
        "sim": {"enabled": url == "embedded"},
        "trading": trading,
    }, "test")


def decide(network: str, url: str, discovered_sim: bool, tmp_path: Path) -> Any:
    """What the engine does at start: load the config, the trade preflight, then the
    discovered-venue check (with the probe's answer given)."""
    try:
        cfg = trade_cfg(network, url, tmp_path, allow_live=True)
    except ConfigError:
        return ERR
    app = TradingApp(cfg)
    try:
        app.preflight()
    except StartupError as exc:
        assert exc.exit_code == EXIT_CONFIG
        return ERR
    net = app.network
    assert net is not None
    ws, info = URLS[url]
    if needs_discovery_check(ws, info, cfg.sim.enabled):
        try:
            check_discovered(net, discovered_sim, info)
        except NetworkError:
            return ERR
    return (net.name, net.signs_mainnet, net.needs_allow_live)


@pytest.fixture(autouse=True)
def agent_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGINE_AGENT_KEY", KEY)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)


@pytest.mark.parametrize(("network", "url", "discovered_sim"), sorted(TABLE))
def test_network_url_and_discovered_venue(network: str, url: str, discovered_sim: bool,
                                          tmp_path: Path) -> None:
    assert decide(network, url, discovered_sim, tmp_path) == TABLE[(network, url, discovered_sim)]


@pytest.mark.parametrize(("ws", "info", "network", "expected"), [
    # the two URLs must agree: an order socket on another network than the info endpoint
    ("wss://api.hyperliquid.xyz/ws", "https://api.hyperliquid-testnet.xyz/info", "", ERR),
    ("wss://api.hyperliquid.xyz/ws", "https://api.hyperliquid-testnet.xyz/info", "mainnet", ERR),
    ("wss://api.hyperliquid.xyz/ws", "https://api.hyperliquid-testnet.xyz/info", "testnet", ERR),
    ("ws://127.0.0.1:9/ws", "https://api.hyperliquid.xyz/info", "sim", ERR),
    ("ws://127.0.0.1:9/ws", "https://api.hyperliquid.xyz/info", "mainnet", "mainnet"),
    # a host that merely ends in the name is not the official host
    ("wss://evilhyperliquid.xyz/ws", "https://evilhyperliquid.xyz/info", "", ERR),
])
def test_mixed_urls(ws: str, info: str, network: str, expected: str, tmp_path: Path) -> None:
    try:
        cfg = structure_config({"mode": "trade", "account": {"address": MASTER},
                                "records": {"dir": str(tmp_path)},
                                "venue": {"network": network, "ws_url": ws, "info_url": info},
                                "trading": {"allow_live": True}}, "test")
        app = TradingApp(cfg)
        app.preflight()
    except (ConfigError, StartupError):
        assert expected == ERR
        return
    assert app.network is not None and app.network.name == expected


def test_a_mainnet_node_on_another_host_needs_allow_live(tmp_path: Path) -> None:
    """The old gate only knew hosts ending in hyperliquid.xyz: a mainnet node elsewhere
    signed real orders without allow_live."""
    cfg = trade_cfg("mainnet", "other_host")
    assert is_real_mainnet(cfg)
    with pytest.raises(StartupError, match="allow_live") as exc:
        TradingApp(cfg).preflight()
    assert exc.value.exit_code == EXIT_CONFIG


def test_testnet_on_another_host_signs_with_the_testnet_source(tmp_path: Path) -> None:
    """The old chain choice signed mainnet whenever the URL lacked "testnet"."""
    app = TradingApp(trade_cfg("testnet", "other_host"))
    app.preflight()
    assert app.network is not None and not app.network.signs_mainnet
    assert not is_real_mainnet(app.cfg)


def test_an_unset_network_on_a_custom_host_refuses_trade_mode() -> None:
    with pytest.raises(StartupError, match=r"needs \[venue\] network"):
        TradingApp(trade_cfg("", "other_host")).preflight()
    # observe and paper never sign: no network needed
    structure_config({"mode": "observe", "venue": {"ws_url": URLS["other_host"][0],
                                                   "info_url": URLS["other_host"][1]}}, "t")


def test_host_classes() -> None:
    assert host_class("wss://api.hyperliquid.xyz/ws") == "mainnet"
    assert host_class("https://API.Hyperliquid.xyz./info") == "mainnet"
    assert host_class("wss://api.hyperliquid-testnet.xyz/ws") == "testnet"
    assert host_class("ws://localhost:1/ws") == "loopback"
    assert host_class("ws://[::1]:1/ws") == "loopback"
    assert host_class("ws://127.0.0.2:1/ws") == "loopback"
    assert host_class("ws://10.0.0.1:1/ws") == "other"
    assert host_class("ws://hyperliquid.xyz.evil.com/ws") == "other"


# ------------------------------------------------------------------ the probe, over loopback


async def _http_404(nursery: trio.Nursery) -> int:
    async def handler(stream: trio.SocketStream) -> None:
        try:
            await stream.receive_some(65536)
            await stream.send_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n"
                                  b"connection: close\r\n\r\n")
        except trio.BrokenResourceError:
            pass
        await stream.aclose()

    listeners = await nursery.start(trio.serve_tcp, handler, 0)
    return int(listeners[0].socket.getsockname()[1])


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


async def test_probe_tells_the_simulator_from_another_venue(nursery: trio.Nursery) -> None:
    sim = SimExchange(seed=3, n_markets=2)
    port = await nursery.start(sim.serve)
    assert await probe_simulator(f"http://127.0.0.1:{port}/info", 5.0)
    other = await _http_404(nursery)
    assert not await probe_simulator(f"http://127.0.0.1:{other}/info", 5.0)
    assert not await probe_simulator(f"http://127.0.0.1:{_closed_port()}/info", 2.0)


async def test_trade_start_refuses_the_simulator_as_mainnet_and_a_non_sim_as_sim(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    sim = SimExchange(seed=3, n_markets=2)
    port = await nursery.start(sim.serve)
    other = await _http_404(nursery)

    def app_for(network: str, p: int) -> TradingApp:
        cfg = structure_config({
            "mode": "trade", "account": {"address": MASTER}, "records": {"dir": str(tmp_path)},
            "venue": {"network": network, "ws_url": f"ws://127.0.0.1:{p}/ws",
                      "info_url": f"http://127.0.0.1:{p}/info", "info_timeout_s": 5.0},
            "trading": {"allow_live": True}}, "test")
        a = TradingApp(cfg)
        a.preflight()
        return a

    with pytest.raises(StartupError, match=r'simulator: set \[venue\] network = "sim"'):
        await app_for("mainnet", port).verify_venue()
    with pytest.raises(StartupError, match="is not the engine's simulator"):
        await app_for("sim", other).verify_venue()
    await app_for("sim", port).verify_venue()  # the simulator as "sim": fine
    await app_for("testnet", other).verify_venue()  # a testnet node of one's own: fine
