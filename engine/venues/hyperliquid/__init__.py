"""Hyperliquid adapter: wire codec, WebSocket client, user streams, order execution, info.

Modules: ``factory`` (``FACTORY``: the venue's pieces for the shell, registered as
``"hyperliquid"`` in :mod:`engine.venues.registry`; the WebSocket connection itself is the
shared :mod:`engine.net.ws`, ``ws`` here an alias nothing imports any more), ``wire``
(decode/encode of WS frames, incl. ``orderUpdates`` / ``userFills``), the feed ``HyperliquidFeed`` split by job: ``client`` (the
feed: reconnect loop, sessions, replay, the reader and its write coalescing), ``session`` (one
connection, reconnect back-off), ``subscriptions`` (streams and their acks), ``routing``
(decode and route each frame), ``watchdog`` (keep-alive, staleness, stability), ``outbox``
(post/request correlation, group-commit writes), ``posts`` (post tickets and failures),
``handlers`` (the protocols the feed calls), ``feed_stats`` (its counters); ``execution``
(``OrderExecutor``: signed order/cancel posts, per-order outcomes, ``orderStatus`` and
reconciliation queries), ``deadman`` (``scheduleCancel`` keeper), ``signing`` (L1 action
signing), ``nonce`` (per-signer nonces, clock drift), ``info`` (REST info calls and HIP-3
market discovery), ``l2book`` (depth levels for paper fills), ``network`` (which network a
URL is, the allow_live gate), ``keys`` (the agent key → signer), ``ratelog`` (alias of
:mod:`engine.net.ratelog`),
``order_events`` (the venue's order answers and reject texts → the core's neutral order reports;
``HyperliquidTradingCore``), ``rounding`` (the price/size grid: ``HyperliquidRounding``, the
instruments' rule), ``warm`` (the shadow-core warm-up).
"""
