"""Hyperliquid adapter: wire codec, WebSocket client, info/discovery.

Modules: ``ws`` (wsproto-direct WebSocket connection), ``wire`` (decode/encode of WS frames),
``client`` (``HyperliquidFeed``: subscriptions, keep-alive, reconnects, posts), ``info`` (REST
info calls and HIP-3 market discovery), ``ratelog`` (rate-limited logging of bad input).
"""
