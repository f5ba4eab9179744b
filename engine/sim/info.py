"""The ``info`` API (``POST /info`` and WS ``post`` of type ``info``): request validation and the
venue's response shapes (docs/reference/hyperliquid-protocol.md §6, §9), including the ``dex`` rules.

Without ``dex`` (or with ``""``) queries address the main dex, which never shows xyz coins.
User queries (``clearinghouseState``, ``openOrders``, ``frontendOpenOrders``, ``orderStatus``,
``userFills``, ``userRateLimit``, ``userFees``) are answered from the trading side's accounts. The
``perpDexs`` list starts with ``null`` (main dex); ``dex_position`` K puts K-1 dummy dexes
before xyz so that clients which hard-code the 110000 asset offset are caught.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.sim import grid
from engine.sim.markets import (
    MAIN_MARKETS,
    XYZ_DEX,
    XYZ_FULL_NAME,
    MarketSpec,
    dummy_dex_names,
    dummy_market,
)
from engine.sim.model import Ctx, MarketModel
from engine.sim.subscriptions import is_address

if TYPE_CHECKING:
    from engine.sim.trading import Trading

LAST_FEE_SCALE_CHANGE = "2025-10-13T14:51:20.126"
_DESERIALIZE = "Failed to deserialize the JSON body into the target type"


class InfoError(ValueError):
    """A request the venue rejects (HTTP 422); the message mirrors the venue's wording."""


def _address(*parts: str) -> str:
    return "0x" + hashlib.sha256("/".join(parts).encode()).hexdigest()[:40]


def _static_ctx(spec: MarketSpec) -> Ctx:
    """A fixed context for markets that are listed but not modelled (main and dummy dexes)."""
    px = grid.fmt_price(spec.ref_px, spec.sz_decimals)
    hs = spec.ref_px * spec.half_spread_bps * 1e-4
    return Ctx(
        funding="0.0000125",
        openInterest=grid.fmt_size(1_000_000 / spec.ref_px, spec.sz_decimals),
        prevDayPx=px,
        dayNtlVlm="1000000",
        premium="0",
        oraclePx=px,
        markPx=px,
        midPx=px,
        impactPxs=(
            grid.fmt_price(spec.ref_px - hs, spec.sz_decimals, "down"),
            grid.fmt_price(spec.ref_px + hs, spec.sz_decimals, "up"),
        ),
        dayBaseVlm=grid.fmt_size(1_000_000 / spec.ref_px, spec.sz_decimals),
    )


def _universe_entry(spec: MarketSpec, builder: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "szDecimals": spec.sz_decimals,
        "name": spec.name,
        "maxLeverage": spec.max_leverage,
        "marginTableId": spec.max_leverage,
    }
    if builder:
        entry["onlyIsolated"] = True
        entry["marginMode"] = "strictIsolated"
    return entry


def _meta(specs: tuple[MarketSpec, ...] | list[MarketSpec], builder: bool) -> dict[str, Any]:
    tables = sorted({s.max_leverage for s in specs})
    return {
        "universe": [_universe_entry(s, builder) for s in specs],
        "marginTables": [
            [
                lev,
                {
                    "description": "",
                    "marginTiers": [{"lowerBound": "0.0", "maxLeverage": lev}],
                },
            ]
            for lev in tables
        ],
        "collateralToken": 0,
    }


def _dex_entry(name: str, full_name: str, specs: list[MarketSpec]) -> dict[str, Any]:
    # Alphabetical, not meta order: clients must take asset indices from meta(dex), not from here.
    ordered = sorted(specs, key=lambda s: s.name)
    oracle_updater = _address(name, "oracleUpdater")
    return {
        "name": name,
        "fullName": full_name,
        "deployer": _address(name, "deployer"),
        "oracleUpdater": oracle_updater,
        "feeRecipient": _address(name, "feeRecipient"),
        "assetToStreamingOiCap": [[s.name, f"{s.oi_cap_usd:.1f}"] for s in ordered],
        "subDeployers": [["setOracle", [oracle_updater]]],
        "deployerFeeScale": "1.0",
        "lastDeployerFeeScaleChangeTime": LAST_FEE_SCALE_CHANGE,
        "assetToFundingMultiplier": [[s.name, "1.0"] for s in ordered],
        "assetToFundingInterestRate": [[s.name, "0.0"] for s in ordered],
    }


def _empty_clearinghouse(now_ms: int) -> dict[str, Any]:
    summary = {
        "accountValue": "0.0",
        "totalNtlPos": "0.0",
        "totalRawUsd": "0.0",
        "totalMarginUsed": "0.0",
    }
    return {
        "marginSummary": dict(summary),
        "crossMarginSummary": dict(summary),
        "crossMaintenanceMarginUsed": "0.0",
        "withdrawable": "0.0",
        "assetPositions": [],
        "time": now_ms,
    }


class InfoService:
    """Answers info requests from the live model (xyz) and static data (other dexes)."""

    def __init__(
        self,
        model: MarketModel,
        dex_position: int = 1,
        now_ms: Callable[[], int] | None = None,
        users: Trading | None = None,
    ) -> None:
        if dex_position < 1:
            raise ValueError(f"dex_position must be >= 1, got {dex_position}")
        self.model = model
        self.dex_position = dex_position
        self.users = users  # account state; None = every user is empty
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))
        self.dummy_dexes = dummy_dex_names(dex_position - 1)
        self._dummy_specs = {d: dummy_market(d) for d in self.dummy_dexes}
        self._xyz_meta = _meta(model.specs, builder=True)
        self._main_meta = _meta(MAIN_MARKETS, builder=False)
        self._main_ctxs = [_static_ctx(s).to_wire() for s in MAIN_MARKETS]
        entries: list[dict[str, Any] | None] = [None]
        entries += [_dex_entry(d, d.upper(), [self._dummy_specs[d]]) for d in self.dummy_dexes]
        entries.append(_dex_entry(XYZ_DEX, XYZ_FULL_NAME, model.specs))
        self._perp_dexs = entries
        self._handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "perpDexs": lambda _b: self._perp_dexs,
            "meta": self._meta,
            "metaAndAssetCtxs": self._meta_and_ctxs,
            "spotMeta": lambda _b: {"universe": [], "tokens": []},
            "allMids": lambda b: self.mids(self._dex(b)),
            "l2Book": self._l2book,
            "clearinghouseState": self._clearinghouse,
            "openOrders": self._user_list,
            "frontendOpenOrders": self._user_list,
            "userFills": self._user_fills,
            "orderStatus": self._order_status,
            "userRateLimit": self._user_rate_limit,
            "userFees": self._user_fees,
        }

    @property
    def dexes(self) -> list[str]:
        """Builder dex names in perpDexs order (index i+1 in the perpDexs array)."""
        return [*self.dummy_dexes, XYZ_DEX]

    def handle(self, body: Any) -> Any:
        """The result for one info request body, or :class:`InfoError`."""
        if not isinstance(body, dict):
            raise InfoError(f"{_DESERIALIZE}: expected an object")
        kind = body.get("type")
        if not isinstance(kind, str):
            raise InfoError(f"{_DESERIALIZE}: missing field `type`")
        handler = self._handlers.get(kind)
        if handler is None:
            raise InfoError(f"{_DESERIALIZE}: unknown variant `{kind}`")
        return handler(body)

    def mids(self, dex: str) -> dict[str, str]:
        if dex == XYZ_DEX:
            return {coin: self.model.mid(coin) for coin in self.model.coins}
        if dex == "":
            return {s.name: grid.fmt_price(s.ref_px, s.sz_decimals) for s in MAIN_MARKETS}
        spec = self._dummy_specs[dex]
        return {spec.name: grid.fmt_price(spec.ref_px, spec.sz_decimals)}

    # ------------------------------------------------------------------ handlers

    def _dex(self, body: dict[str, Any]) -> str:
        dex = body.get("dex", "")
        if dex is None:
            return ""
        if not isinstance(dex, str):
            raise InfoError(f"{_DESERIALIZE}: invalid type for `dex`, expected a string")
        if dex and dex not in self.dexes:
            raise InfoError(f"unknown dex {dex!r}")
        return dex

    def _user(self, body: dict[str, Any]) -> str:
        user = body.get("user")
        if user is None:
            raise InfoError(f"{_DESERIALIZE}: missing field `user`")
        if not is_address(user):
            raise InfoError(f"{_DESERIALIZE}: invalid address for `user`: {user!r}")
        return user

    def _meta(self, body: dict[str, Any]) -> dict[str, Any]:
        dex = self._dex(body)
        if dex == XYZ_DEX:
            return self._xyz_meta
        if dex == "":
            return self._main_meta
        return _meta([self._dummy_specs[dex]], builder=True)

    def _meta_and_ctxs(self, body: dict[str, Any]) -> list[Any]:
        dex = self._dex(body)
        if dex == XYZ_DEX:
            ctxs = [self.model.ctx(coin).to_wire() for coin in self.model.coins]
            return [self._xyz_meta, ctxs]
        if dex == "":
            return [self._main_meta, self._main_ctxs]
        spec = self._dummy_specs[dex]
        return [_meta([spec], builder=True), [_static_ctx(spec).to_wire()]]

    def _l2book(self, body: dict[str, Any]) -> dict[str, Any] | None:
        coin = body.get("coin")
        if not isinstance(coin, str):
            raise InfoError(f"{_DESERIALIZE}: missing field `coin`")
        n_sig = body.get("nSigFigs")
        if n_sig not in (None, 2, 3, 4, 5) or isinstance(n_sig, bool):
            raise InfoError(f"{_DESERIALIZE}: invalid value for `nSigFigs`")
        if coin not in self.model.coins:
            return None
        bids, asks = self.model.l2_levels(coin, depth=20)
        return {
            "coin": coin,
            "time": self._now_ms(),
            "levels": [
                [{"px": b.px, "sz": b.sz, "n": b.n} for b in bids],
                [{"px": a.px, "sz": a.sz, "n": a.n} for a in asks],
            ],
        }

    def _clearinghouse(self, body: dict[str, Any]) -> dict[str, Any]:
        user = self._user(body)
        dex = self._dex(body)
        if self.users is None:
            return _empty_clearinghouse(self._now_ms())
        return self.users.clearinghouse(user, dex)

    def _user_list(self, body: dict[str, Any]) -> list[Any]:
        user = self._user(body)
        dex = self._dex(body)
        if self.users is None:
            return []
        return self.users.open_orders(user, dex, frontend=body["type"] == "frontendOpenOrders")

    def _user_fills(self, body: dict[str, Any]) -> list[Any]:
        user = self._user(body)
        if self.users is None:
            return []
        return self.users.user_fills(user)

    def _order_status(self, body: dict[str, Any]) -> dict[str, Any]:
        user = self._user(body)
        oid = body.get("oid")
        if isinstance(oid, bool) or not isinstance(oid, int | str):
            raise InfoError(f"{_DESERIALIZE}: missing field `oid`")
        if self.users is None:
            return {"status": "unknownOid"}
        return self.users.order_status(user, oid)

    def _user_rate_limit(self, body: dict[str, Any]) -> dict[str, Any]:
        user = self._user(body)
        if self.users is None:
            return {"cumVlm": "0.0", "nRequestsUsed": 0, "nRequestsCap": 10000}
        return self.users.user_rate_limit(user)

    def _user_fees(self, body: dict[str, Any]) -> dict[str, Any]:
        user = self._user(body)
        if self.users is None:
            raise InfoError("userFees needs trading enabled")
        return self.users.user_fees(user)
