"""A local Bybit v5 exchange simulator (spot + USDT linear perpetuals, funding, private streams).

Independent of the engine: it imports nothing from ``engine`` outside ``engine.sim.bybit`` (a
test enforces it). :mod:`.wire` (its own codec and HMAC verification), :mod:`.exchange`
(markets, accounts, matching, funding, fault knobs), :mod:`.server` (REST + WebSocket on one
port), :mod:`.cli` (``python -m engine sim --venue bybit``).
"""
