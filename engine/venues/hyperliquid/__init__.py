"""Hyperliquid adapter: wire codec, WebSocket client, user streams, order execution, info.

Modules: ``ws`` (wsproto-direct WebSocket connection, fast receive and send paths), ``wire``
(decode/encode of WS frames, incl. ``orderUpdates`` / ``userFills``), ``client``
(``HyperliquidFeed``: subscriptions incl. user streams, keep-alive, reconnects, posts with
write coalescing), ``execution`` (``OrderExecutor``: signed order/cancel posts, per-order
outcomes, ``orderStatus`` and reconciliation queries), ``signing`` (L1 action signing),
``nonce`` (per-signer nonces, clock drift), ``info`` (REST info calls and HIP-3 market
discovery), ``ratelog`` (rate-limited logging of bad input), ``order_events`` (the venue's order
answers and reject texts → the core's neutral order reports; ``HyperliquidTradingCore``),
``rounding`` (the price/size grid: ``HyperliquidRounding``, the instruments' rule), ``warm``
(the shadow-core warm-up).
"""
