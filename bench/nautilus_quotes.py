"""NautilusTrader's BacktestEngine with a Python strategy over N quote ticks: the reference the
replay target of issue 10 was set against ("about 245,000 quote events/s on this machine").

Run by ``bench/bench_replay_vs_nautilus.py`` with a Python that has ``nautilus_trader``
installed (a venv of its own: it is not a dependency of the engine). The strategy does the
least a quote strategy does (a mid and a move check per tick); the ticks are built before the
clock starts. Prints one JSON line: quotes, wall seconds and CPU seconds of ``engine.run()``.
"""

import json
import sys
import time

from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
from nautilus_trader.config import LoggingConfig, StrategyConfig
from nautilus_trader.model.currencies import USD
from nautilus_trader.model.data import QuoteTick
from nautilus_trader.model.enums import AccountType, OmsType
from nautilus_trader.model.identifiers import InstrumentId, Venue
from nautilus_trader.model.objects import Money, Price, Quantity
from nautilus_trader.test_kit.providers import TestInstrumentProvider
from nautilus_trader.trading.strategy import Strategy


class QuotesConfig(StrategyConfig, frozen=True):
    instrument_id: str


class Quotes(Strategy):
    """A mid per quote tick and a 1 % move check: the least work a quote strategy does."""

    def __init__(self, config: QuotesConfig) -> None:
        super().__init__(config)
        self.n = 0
        self.last_mid = 0.0

    def on_start(self) -> None:
        self.subscribe_quote_ticks(InstrumentId.from_str(self.config.instrument_id))

    def on_quote_tick(self, tick: QuoteTick) -> None:
        self.n += 1
        mid = (tick.bid_price.as_double() + tick.ask_price.as_double()) * 0.5
        if self.last_mid and abs(mid - self.last_mid) / self.last_mid > 0.01:
            self.log.info("move")
        self.last_mid = mid


def main(n: int) -> None:
    eng = BacktestEngine(config=BacktestEngineConfig(logging=LoggingConfig(bypass_logging=True)))
    venue = Venue("SIM")
    eng.add_venue(venue=venue, oms_type=OmsType.NETTING, account_type=AccountType.MARGIN,
                  base_currency=USD, starting_balances=[Money(1_000_000, USD)])
    inst = TestInstrumentProvider.default_fx_ccy("AUD/USD", venue)
    eng.add_instrument(inst)
    t0 = 1_700_000_000_000_000_000
    size = Quantity.from_int(100_000)
    ticks = []
    for i in range(n):
        bid = 0.70000 + (i % 50) * 0.00001
        ts = t0 + i * 1_000_000
        ticks.append(QuoteTick(instrument_id=inst.id, bid_price=Price(bid, 5),
                               ask_price=Price(bid + 0.00002, 5), bid_size=size,
                               ask_size=size, ts_event=ts, ts_init=ts))
    eng.add_data(ticks)
    strategy = Quotes(QuotesConfig(instrument_id=str(inst.id)))
    eng.add_strategy(strategy)
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    eng.run()
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    if strategy.n != n:
        raise SystemExit(f"the strategy saw {strategy.n} of {n} quotes")
    print(json.dumps({"quotes": n, "wall_s": wall, "cpu_s": cpu}))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
