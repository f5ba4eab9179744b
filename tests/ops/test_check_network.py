"""``python -m engine check`` and ``[venue] network`` (issue 9 item 11): the config line names
the network; trade mode without a resolvable network, or against a venue that is not the
configured network, is NO-GO."""

from __future__ import annotations

import io
import os
from pathlib import Path

import trio

from engine.ops.check import EXIT_NO_GO, run_check_async
from engine.sim.server import SimExchange

AGENT_KEY = "0x" + "4c" * 32  # test-only key
MASTER = "0x" + "12" * 20
_SCRUB = ("ENGINE_AGENT_KEY", "ENGINE_OPS_TOKEN", "ENGINE_WEBHOOK_URL", "CREDENTIALS_DIRECTORY",
          "STATE_DIRECTORY")


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE__") and k not in _SCRUB}
    env.update({"ENGINE__RECORDS__DIR": str(tmp_path / "data"), "ENGINE_AGENT_KEY": AGENT_KEY,
                "ENGINE__ACCOUNT__ADDRESS": MASTER, "ENGINE__NOTIFY__ENABLED": "false",
                "ENGINE__OPS__HTTP_ENABLED": "false"})
    return env


async def _check(tmp_path: Path, network: str, port: int) -> tuple[int, list[str]]:
    p = tmp_path / "engine.toml"
    p.write_text(f'mode = "trade"\n[venue]\nnetwork = "{network}"\n'
                 f'info_url = "http://127.0.0.1:{port}/info"\n'
                 f'ws_url = "ws://127.0.0.1:{port}/ws"\ninfo_timeout_s = 5\n'
                 '[trading]\nallow_live = true\n', "utf-8")
    out = io.StringIO()
    code = await run_check_async(str(p), mode=None, run_tests=False, tests_path=None, out=out,
                                 env=_env(tmp_path))
    return code, out.getvalue().splitlines()


def _line(lines: list[str], name: str) -> str:
    return next(ln for ln in lines if ln.split("] ", 1)[-1].startswith(f"{name}:"))


async def test_the_simulator_configured_as_mainnet_is_no_go(tmp_path: Path,
                                                            nursery: trio.Nursery) -> None:
    sim = SimExchange(seed=2, n_markets=2, accounts={MASTER: 1000.0})
    port = await nursery.start(sim.serve)
    code, lines = await _check(tmp_path, "mainnet", port)
    assert "network mainnet" in _line(lines, "config")
    assert _line(lines, "network").startswith("[FAIL] network: ")
    assert 'set [venue] network = "sim"' in _line(lines, "network")
    assert code == EXIT_NO_GO and "network" in lines[-1]
    code, lines = await _check(tmp_path, "sim", port)
    assert _line(lines, "network").startswith("[PASS] network: sim")


async def test_trade_mode_on_a_custom_host_without_network_is_no_go(tmp_path: Path) -> None:
    p = tmp_path / "engine.toml"
    p.write_text('mode = "trade"\n[venue]\nws_url = "wss://node.example.com/ws"\n'
                 'info_url = "https://node.example.com/info"\n', "utf-8")
    out = io.StringIO()
    code = await run_check_async(str(p), mode=None, run_tests=False, tests_path=None, out=out,
                                 env=_env(tmp_path))
    lines = out.getvalue().splitlines()
    assert code == EXIT_NO_GO
    assert lines[0].startswith("[FAIL] config: ") and "needs [venue] network" in lines[0]
