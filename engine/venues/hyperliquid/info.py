"""Hyperliquid REST info client and HIP-3 market discovery (docs/reference/hyperliquid-protocol.md §6, §9).

Owns the ``POST /info`` calls (``perpDexs``, ``meta``, ``metaAndAssetCtxs``) and the one place
where asset ids are derived:

* the dex is the ``perpDexs`` element whose ``name`` equals the configured dex EXACTLY (pitfall
  D4: never a substring match); its array position is the dex index (element 0 is ``null`` =
  the main dex);
* ``asset_id = 100000 + 10000 × dex_index + position in meta(dex).universe`` (pitfall P9: never
  the order of ``perpDexs[i].assetToStreamingOiCap``; P10: never a hard-coded dex index);
* ``szDecimals``/``maxLeverage`` come from ``meta(dex)`` (P11: never from the main-dex meta);
* coin names are the full ``dex:COIN`` form; a configured ``SILVER`` means ``xyz:SILVER``.

Errors carry a message a user can act on; nothing is guessed or defaulted. The split tells the
caller what to do: :class:`InfoError` = the endpoint could not be used (transport failure,
timeout, HTTP error status, non-JSON body): transient, worth retrying; :class:`DiscoveryError` =
the answer does not fit the configuration or the documented shape (dex or market not found,
delisted market, empty universe, malformed response): retrying will not help.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any, Final

import attrs
import httpx
import msgspec

from engine.core.types import MarketSpec
from engine.venues.hyperliquid.ratelog import excerpt

log = logging.getLogger(__name__)

BUILDER_ASSET_BASE: Final = 100_000
DEX_ASSET_STRIDE: Final = 10_000


class InfoError(Exception):
    """An info request failed: transport error, timeout, HTTP error status, non-JSON body."""


class MalformedInfoError(InfoError):
    """An info answer was JSON but not of the documented shape."""


class DiscoveryError(Exception):
    """Market discovery failed; the message says why and what is available."""


@attrs.frozen
class Discovery:
    """The result of :func:`discover`: the dex, its ``perpDexs`` position and the markets.

    ``markets[i].index == i``; the order is the configured order, or ``meta(dex)`` order when
    all markets were discovered.
    """

    dex: str
    dex_index: int
    markets: list[MarketSpec]

    def by_coin(self) -> dict[str, MarketSpec]:
        return {m.coin: m for m in self.markets}


class InfoClient:
    """Thin async client for ``POST info_url`` with JSON bodies (httpx, works under Trio)."""

    def __init__(
        self,
        info_url: str,
        timeout: float,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.info_url = info_url
        self._client = httpx.AsyncClient(
            timeout=timeout,
            transport=transport,
            headers={"Content-Type": "application/json"},
        )

    async def __aenter__(self) -> InfoClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(self, payload: dict[str, Any]) -> Any:
        """POST ``payload`` and return the decoded JSON body; raise :class:`InfoError`."""
        what = payload.get("type", "?")
        try:
            resp = await self._client.post(self.info_url, content=msgspec.json.encode(payload))
        except httpx.TimeoutException as exc:
            raise InfoError(f"info {what!r}: timed out ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise InfoError(f"info {what!r}: request to {self.info_url} failed: {exc!r}") from None
        if resp.status_code != 200:
            raise InfoError(
                f"info {what!r}: HTTP {resp.status_code} from {self.info_url}: "
                f"{excerpt(resp.content)}"
            )
        try:
            return msgspec.json.decode(resp.content)
        except msgspec.DecodeError:
            raise InfoError(
                f"info {what!r}: response is not JSON: {excerpt(resp.content)}"
            ) from None

    async def perp_dexs(self) -> list[Any]:
        """``{"type":"perpDexs"}``: a list whose element 0 is ``null`` (the main dex)."""
        data = await self.request({"type": "perpDexs"})
        if not isinstance(data, list):
            raise MalformedInfoError(f"info 'perpDexs': expected a list, got {excerpt(repr(data))}")
        return data

    async def meta(self, dex: str) -> dict[str, Any]:
        """``{"type":"meta","dex":dex}``: ``{"universe": [...], ...}``."""
        data = await self.request({"type": "meta", "dex": dex})
        if not isinstance(data, dict):
            raise MalformedInfoError(f"info 'meta': expected an object, got {excerpt(repr(data))}")
        return data

    async def meta_and_asset_ctxs(self, dex: str) -> list[Any]:
        """``{"type":"metaAndAssetCtxs","dex":dex}``: ``[meta, [ctx, ...]]`` aligned by index."""
        data = await self.request({"type": "metaAndAssetCtxs", "dex": dex})
        if not (isinstance(data, list) and len(data) == 2 and isinstance(data[0], dict)):
            raise MalformedInfoError(
                f"info 'metaAndAssetCtxs': expected [meta, ctxs], got {excerpt(repr(data))}"
            )
        return data


def normalise_coin(dex: str, name: str) -> str:
    """``SILVER`` → ``xyz:SILVER``; ``xyz:SILVER`` unchanged; another dex's prefix is an error."""
    name = name.strip()
    if ":" in name:
        prefix, _, rest = name.partition(":")
        if prefix != dex or not rest:
            raise DiscoveryError(
                f"market {name!r} does not belong to dex {dex!r} (expected {dex}:<COIN> or <COIN>)"
            )
        return name
    if not name:
        raise DiscoveryError("empty market name in the configured markets")
    return f"{dex}:{name}"


def find_dex_index(perp_dexs: Sequence[Any], dex: str) -> int:
    """Position of the element whose ``name`` equals ``dex`` exactly (element 0 = main dex)."""
    matches = [
        i for i, d in enumerate(perp_dexs) if i > 0 and isinstance(d, dict) and d.get("name") == dex
    ]
    if len(matches) == 1:
        return matches[0]
    names = [d.get("name") for d in perp_dexs if isinstance(d, dict)]
    shown = ", ".join(repr(n) for n in names[:30]) + (" ..." if len(names) > 30 else "")
    if not matches:
        raise DiscoveryError(
            f"dex {dex!r} not found in perpDexs (exact name match); available: {shown or 'none'}"
        )
    raise DiscoveryError(f"dex {dex!r} appears {len(matches)} times in perpDexs at {matches}")


@attrs.frozen
class _UniverseEntry:
    position: int
    coin: str
    sz_decimals: int
    max_leverage: int
    delisted: bool


def _parse_universe(dex: str, meta: dict[str, Any]) -> tuple[list[_UniverseEntry], list[str]]:
    """Parse ``meta(dex).universe``; return the entries and problems (entries skipped)."""
    universe = meta.get("universe")
    if not isinstance(universe, list):
        raise DiscoveryError(
            f"malformed meta(dex={dex!r}) response: no 'universe' list "
            f"(got keys {sorted(meta)[:10]})"
        )
    entries: list[_UniverseEntry] = []
    problems: list[str] = []
    for pos, raw in enumerate(universe):
        if not isinstance(raw, dict):
            problems.append(f"universe[{pos}] is not an object")
            continue
        name = raw.get("name")
        szd = raw.get("szDecimals")
        lev = raw.get("maxLeverage", 0)
        delisted = raw.get("isDelisted", False)
        if not isinstance(name, str) or not name:
            problems.append(f"universe[{pos}] has no name")
            continue
        coin = name if name.startswith(f"{dex}:") else f"{dex}:{name}"
        if isinstance(szd, bool) or not isinstance(szd, int) or not 0 <= szd <= 18:
            problems.append(f"universe[{pos}] {coin}: bad szDecimals {szd!r}")
            continue
        if isinstance(lev, bool) or not isinstance(lev, int | float) or not math.isfinite(lev):
            problems.append(f"universe[{pos}] {coin}: bad maxLeverage {lev!r}")
            continue
        if not isinstance(delisted, bool):
            delisted = bool(delisted)
        entries.append(_UniverseEntry(pos, coin, szd, int(lev), delisted))
    return entries, problems


async def discover(
    info_url: str,
    dex: str,
    markets: Sequence[str] | None,
    timeout: float,  # noqa: ASYNC109 - per-request HTTP timeout, by API contract
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    record: Callable[[dict[str, Any], Any], None] | None = None,
) -> Discovery:
    """Discover ``dex``'s markets (all listed ones if ``markets`` is None or empty).

    Raises :class:`DiscoveryError` when the dex or a configured market does not exist, a
    configured market is delisted, the universe is empty, or a response is malformed; raises
    :class:`InfoError` when the info endpoint cannot be used (transient: retry).
    ``record(request, answer)`` is called with each info answer used (frame recording).
    """
    _wanted(dex, markets)  # the configured names are checked before any request
    async with InfoClient(info_url, timeout, transport=transport) as client:
        try:
            perp_dexs = await client.perp_dexs()
            if record is not None:
                record({"type": "perpDexs"}, perp_dexs)
            dex_index = find_dex_index(perp_dexs, dex)
            meta = await client.meta(dex)
            if record is not None:
                record({"type": "meta", "dex": dex}, meta)
        except MalformedInfoError as exc:
            raise DiscoveryError(f"discovery of dex {dex!r}: malformed answer: {exc}") from None
        except InfoError as exc:
            raise InfoError(f"discovery of dex {dex!r} failed: {exc}") from None
    return discovery_from(dex, markets, dex_index, meta)


def discovery_from_answers(dex: str, markets: Sequence[str] | None, perp_dexs: Any,
                           meta: Any) -> Discovery:
    """The same discovery from recorded ``perpDexs`` and ``meta`` answers (replay)."""
    try:
        if not isinstance(perp_dexs, list):
            raise MalformedInfoError(f"perpDexs answer is not a list: {perp_dexs!r:.80}")
        dex_index = find_dex_index(perp_dexs, dex)
        if not isinstance(meta, dict):
            raise MalformedInfoError(f"meta answer is not an object: {meta!r:.80}")
    except MalformedInfoError as exc:
        raise DiscoveryError(f"discovery of dex {dex!r}: malformed answer: {exc}") from None
    return discovery_from(dex, markets, dex_index, meta)


def _wanted(dex: str, markets: Sequence[str] | None) -> list[str] | None:
    if not dex or ":" in dex:
        raise DiscoveryError(f"dex must be a HIP-3 dex name such as 'xyz', got {dex!r}")
    wanted: list[str] | None = None
    if markets:
        wanted = []
        for name in markets:
            if not isinstance(name, str):
                raise DiscoveryError(f"market names must be strings, got {name!r}")
            coin = normalise_coin(dex, name)
            if coin in wanted:
                raise DiscoveryError(f"market {coin!r} is configured more than once")
            wanted.append(coin)
    return wanted


def discovery_from(dex: str, markets: Sequence[str] | None, dex_index: int,
                   meta: dict[str, Any]) -> Discovery:
    """Discovery from the answers (the pure part of :func:`discover`)."""
    wanted = _wanted(dex, markets)
    entries, problems = _parse_universe(dex, meta)
    if not entries:
        detail = f" ({len(problems)} malformed: {'; '.join(problems[:3])})" if problems else ""
        raise DiscoveryError(f"meta(dex={dex!r}) has an empty universe{detail}")
    n_universe = len(meta["universe"])
    if n_universe > DEX_ASSET_STRIDE:
        raise DiscoveryError(f"meta(dex={dex!r}) lists {n_universe} assets (> {DEX_ASSET_STRIDE})")
    for p in problems:
        log.warning("meta(dex=%r): skipped malformed entry: %s", dex, p)
    base = BUILDER_ASSET_BASE + DEX_ASSET_STRIDE * dex_index
    by_coin = {e.coin: e for e in entries}
    if len(by_coin) != len(entries):
        seen: set[str] = set()
        dup_set: set[str] = set()
        for e in entries:
            (dup_set if e.coin in seen else seen).add(e.coin)
        dups = sorted(dup_set)
        raise DiscoveryError(f"meta(dex={dex!r}) lists duplicate coin names: {dups}")

    chosen: list[_UniverseEntry]
    if wanted is None:
        chosen = [e for e in entries if not e.delisted]
        n_delisted = len(entries) - len(chosen)
        if n_delisted:
            log.info("dex %r: %d delisted market(s) excluded", dex, n_delisted)
        if not chosen:
            raise DiscoveryError(f"dex {dex!r} has no listed (non-delisted) markets")
    else:
        chosen = []
        for coin in wanted:
            found = by_coin.get(coin)
            if found is None:
                available = [x.coin for x in entries if not x.delisted]
                hint = ""
                folded = {x.coin.lower(): x.coin for x in entries}
                if coin.lower() in folded:
                    hint = f" (names are case-sensitive: did you mean {folded[coin.lower()]!r}?)"
                bad = [p for p in problems if f" {coin}:" in p]
                if bad:
                    raise DiscoveryError(f"market {coin!r} has a malformed meta entry: {bad[0]}")
                raise DiscoveryError(
                    f"market {coin!r} is not in dex {dex!r}{hint}; available "
                    f"({len(available)}): {', '.join(available[:12])}"
                    + (" ..." if len(available) > 12 else "")
                )
            if found.delisted:
                raise DiscoveryError(
                    f"market {coin!r} is delisted on dex {dex!r}; remove it from [venue] markets"
                )
            chosen.append(found)

    specs = [
        MarketSpec(
            index=i,
            coin=e.coin,
            asset_id=base + e.position,
            sz_decimals=e.sz_decimals,
            max_leverage=e.max_leverage,
            delisted=e.delisted,
        )
        for i, e in enumerate(chosen)
    ]
    log.info(
        "discovered dex %r (perpDexs index %d, asset ids %d+): %d market(s)",
        dex,
        dex_index,
        base,
        len(specs),
    )
    return Discovery(dex=dex, dex_index=dex_index, markets=specs)
