"""Hyperliquid adapter: wire codec, WebSocket client, info/discovery."""
