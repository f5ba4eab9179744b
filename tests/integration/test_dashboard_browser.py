"""The dashboard in a real headless browser (Debian's chromium + chromedriver via selenium).

``python -m engine run`` is started as a subprocess: paper mode on the embedded simulator, an
ephemeral ops port (read from its log line), an ops token. The page must show the simulator's
markets, show a signal without a reload (the stream pushes it), refuse an action without the
token and accept it with the token, each after a confirmation dialog; the kill switch stops
the engine with exit 0. In funding mode (``config/bybit-sim.toml``) the "Funding / basis"
table shows both pairs hedged, the empty Hyperliquid sections are hidden, and the flatten
button (with the token) flattens both legs of every pair. ``.ci/run`` installs chromium and chromedriver; without them this
test is skipped and says why.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium "
           "chromium-driver; .ci/run does this)")

TOKEN = "browser-test-token-7a6b5c"  # noqa: S105 (test value)
# flags that work in a container as root without network (see docs/runbook.md)
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1400,2200")


ROOT = Path(__file__).resolve().parents[2]
BYBIT_SIM_TOML = ROOT / "config" / "bybit-sim.toml"


class Engine:
    """``python -m engine run`` (``args`` after ``run``) with its merged output collected by a
    reader thread."""

    def __init__(self, tmp: Path, args: tuple[str, ...] = ("--duration", "240")) -> None:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("ENGINE_") and k not in ("STATE_DIRECTORY", "NOTIFY_SOCKET",
                                                            "CREDENTIALS_DIRECTORY")}
        env.update({"ENGINE__RECORDS__DIR": str(tmp / "data"), "ENGINE__OPS__HTTP_PORT": "0",
                    "ENGINE__SIM__MARKETS": "12", "ENGINE__SUMMARY__INTERVAL_S": "0",
                    "ENGINE_OPS_TOKEN": TOKEN})
        self.data = tmp / "data"
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "run", *args], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def find(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                m = re.search(pattern, line)
                if m is not None:
                    return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no log line matching {pattern!r}; output:\n"
                             + "\n".join(self.lines[-40:]))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(5)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = Engine(tmp_path)
    try:
        yield e
    finally:
        e.stop()


@pytest.fixture
def funding_engine(tmp_path: Path) -> Iterator[Engine]:
    """The funding/basis strategy: paper on the embedded Bybit simulator."""
    e = Engine(tmp_path, ("--config", str(BYBIT_SIM_TOML), "--duration", "240"))
    try:
        yield e
    finally:
        e.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="dashboard-chromium-")
    opts.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = cond()
        except Exception as exc:  # noqa: BLE001 - DOM in flux while the page redraws
            last = exc
        else:
            if last:
                return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def confirm_dialog(driver: Any, accept: bool) -> str:
    def alert() -> Any:
        try:
            return driver.switch_to.alert
        except NoAlertPresentException:
            return None

    a = wait(alert, 10, "the confirmation dialog")
    text = a.text
    a.accept() if accept else a.dismiss()
    return str(text)


def result_text(driver: Any) -> str:
    return str(driver.find_element(By.ID, "action-result").text)


def test_dashboard_in_a_real_browser(engine: Engine, browser: Any, tmp_path: Path) -> None:
    ops_port = int(engine.find(r"ops http: listening on http://127\.0\.0\.1:(\d+)", 60).group(1))
    sim_port = int(engine.find(r"embedded simulator listening on http://127\.0\.0\.1:(\d+)",
                               5).group(1))
    meta = httpx.post(f"http://127.0.0.1:{sim_port}/info", json={"type": "meta", "dex": "xyz"},
                      timeout=5.0).json()
    sim_markets = {u["name"] for u in meta["universe"] if not u.get("isDelisted")}
    assert len(sim_markets) == 12

    browser.get(f"http://127.0.0.1:{ops_port}/")
    browser.execute_script("window.__loadMarker = 42;")

    # the simulator's markets, from the stream
    def coins() -> set[str]:
        rows = browser.find_elements(By.CSS_SELECTOR, "#markets tbody tr[data-coin]")
        return {r.get_attribute("data-coin") for r in rows}

    wait(lambda: coins() == sim_markets, 60, "the simulator's markets on the page")
    wait(lambda: browser.find_element(By.ID, "conn-state").text == "live", 10, "live stream")
    assert browser.find_element(By.ID, "mode").text == "— paper"

    # a signal appears without a reload
    rows = wait(lambda: browser.find_elements(By.CSS_SELECTOR,
                                              "#signals tbody tr[data-signal-id]"),
                90, "a signal row")
    signal_id = rows[0].get_attribute("data-signal-id")
    assert browser.execute_script("return window.__loadMarker;") == 42  # same page, no reload

    def recorded() -> bool:
        for path in glob.glob(str(engine.data / "signals_*.jsonl")):
            with open(path) as fh:
                if any(json.loads(line).get("signal_id") == signal_id for line in fh if line):
                    return True
        return False

    wait(recorded, 10, f"signal {signal_id} in the engine's signals records")

    # an action without the token: confirmed, then refused by the engine
    browser.find_element(By.ID, "btn-flatten").click()
    assert "Flatten every position" in confirm_dialog(browser, accept=True)
    wait(lambda: "refused (401)" in result_text(browser), 10, "the refusal")
    assert any("flatten" in line and "refused: no Authorization header" in line
               for line in engine.lines)

    # a dismissed confirmation sends nothing
    browser.find_element(By.ID, "btn-kill").click()
    confirm_dialog(browser, accept=False)
    wait(lambda: "cancelled" in result_text(browser), 5, "the cancellation")
    time.sleep(1.0)
    assert engine.proc.poll() is None

    # with the token: accepted
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "btn-flatten").click()
    confirm_dialog(browser, accept=True)
    wait(lambda: "accepted (200)" in result_text(browser), 10, "the flatten accepted")
    assert '"flattening"' in result_text(browser)
    assert engine.proc.poll() is None  # flatten keeps the engine running

    shot = tmp_path / "dashboard.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("DASHBOARD_SCREENSHOT"):
        shutil.copy(shot, os.environ["DASHBOARD_SCREENSHOT"])

    # the kill switch with the token: the engine flattens and exits 0
    browser.find_element(By.ID, "btn-kill").click()
    assert "Kill switch" in confirm_dialog(browser, accept=True)
    wait(lambda: "accepted (200)" in result_text(browser), 10, "the kill accepted")
    assert engine.proc.wait(60) == 0
    wait(lambda: "disconnected" in browser.find_element(By.ID, "conn-state").text, 10,
         "the page to notice the engine is gone")


def test_the_funding_dashboard_in_a_real_browser(funding_engine: Engine, browser: Any,
                                                 tmp_path: Path) -> None:
    engine = funding_engine
    ops_port = int(engine.find(r"ops http: listening on http://127\.0\.0\.1:(\d+)", 60).group(1))
    browser.get(f"http://127.0.0.1:{ops_port}/")

    def pairs() -> dict[str, str]:
        return dict(browser.execute_script(
            "return Object.fromEntries(Array.from(document.querySelectorAll("
            "'#funding-pairs tbody tr[data-symbol]'), (r) => [r.dataset.symbol, r.dataset.state]));"))

    wait(lambda: set(pairs()) == {"BTCUSDT", "ETHUSDT"}, 30, "both pairs in the table")
    wait(lambda: "hedged" in pairs().values(), 30, "a hedged pair")
    assert browser.find_element(By.ID, "funding").is_displayed()
    assert "Funding / basis" in browser.find_element(By.CSS_SELECTOR, "#funding h2").text
    for hidden in ("markets-panel", "positions-panel", "signals-orders"):
        assert not browser.find_element(By.ID, hidden).is_displayed(), hidden
    # the table is redrawn from every snapshot: read one row's cells in one script
    cells = wait(lambda: browser.execute_script(
        "const r = document.querySelector('#funding-pairs tbody tr[data-state=hedged]');"
        "return r ? Array.from(r.cells, (c) => c.textContent) : null;"), 10, "a hedged row")
    assert cells[2].startswith("-") and cells[3].startswith("+")  # short perp, long spot
    assert cells[9].endswith("%") and cells[10].endswith("%")  # rate, APR
    pnl = browser.find_element(By.ID, "pnl").text
    assert "closed round trips" in pnl and "open pairs at the mids" in pnl
    assert browser.find_element(By.ID, "btn-flatten").text == "Flatten all pairs"
    shot = tmp_path / "dashboard-funding.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("DASHBOARD_FUNDING_SCREENSHOT"):
        shutil.copy(shot, os.environ["DASHBOARD_FUNDING_SCREENSHOT"])

    # the flatten button with the token: both legs of every pair, the engine keeps running
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "btn-flatten").click()
    assert "both legs of every pair" in confirm_dialog(browser, accept=True)
    wait(lambda: "accepted (200)" in result_text(browser), 10, "the flatten accepted")
    wait(lambda: set(pairs().values()) == {"idle"}, 30, "both pairs flat")
    assert engine.proc.poll() is None
    # the two round trips the flatten closed, newest first, with the core's P&L parts
    trips = wait(lambda: browser.execute_script(
        "return Array.from(document.querySelectorAll('#funding-trips tbody tr[data-intent-id]'),"
        " (r) => Array.from(r.cells, (c) => c.textContent));") or None, 10, "the round trips")
    assert sorted(t[1] for t in trips) == ["BTCUSDT", "ETHUSDT"]
    assert all(t[8] != "–" and t[9] != "–" for t in trips)  # fees, net

    browser.find_element(By.ID, "btn-kill").click()
    assert "both legs" in confirm_dialog(browser, accept=True)
    wait(lambda: "accepted (200)" in result_text(browser), 10, "the kill accepted")
    assert engine.proc.wait(60) == 0
