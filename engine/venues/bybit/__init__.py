"""Bybit v5 venue adapter (Trio): codec, signing, REST, WebSocket streams.

Modules: :mod:`.urls` (mainnet/testnet endpoints), :mod:`.signing` (HMAC-SHA256),
:mod:`.keys` (API key pair from systemd credentials or the environment), :mod:`.codec`
(wire messages → neutral events of :mod:`engine.core.neutral`), :mod:`.http` (trio-native
HTTP/1.1 over h11), :mod:`.rest` (signed REST v5 with time sync and rate-limit back-off),
:mod:`.ws` (public/private streams with ping, reconnect and resubscribe), :mod:`.execution`
(neutral intents → REST orders, ``orderLinkId`` reused on retry). See docs/bybit.md.
"""
