"""Network code shared by every venue adapter: the WebSocket client connection on Trio
(:mod:`engine.net.ws`) and rate-limited logging of untrusted input (:mod:`engine.net.ratelog`).

It knows no venue, no core and no ops (import-linter contract ``shared`` in pyproject.toml).
"""
