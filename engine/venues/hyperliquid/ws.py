"""Moved to :mod:`engine.net.ws` (the WebSocket client is shared by every venue). This alias
remains only because ``engine/venues/hyperliquid/client.py`` still imports the old path; the
client split drops it. It is the same module object, so every name (and a monkeypatch through
the old path) is the one in :mod:`engine.net.ws`."""

from __future__ import annotations

import sys

from engine.net import ws as _ws
from engine.net.ws import *  # noqa: F403 - the public names, for type checkers

sys.modules[__name__] = _ws
