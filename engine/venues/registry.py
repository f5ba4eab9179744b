"""The venue registry: venue name → its factory (:class:`engine.venues.base.VenueFactory`).

Each venue package has a ``factory`` module whose ``FACTORY`` object builds its pieces from
the config. The registry maps names to those modules and imports one only when it is asked
for (so importing the registry imports no venue); :func:`register` adds a venue (a module
path or a factory object). The shell asks :func:`shell_factory` for
the venue it runs (instruments and the market-data feed), :func:`trading_factory` adds the
paper/trade pieces of the Hyperliquid shell, :func:`account_factory` the whole account venue
the funding shell drives (Bybit); ``python -m engine sim --venue`` takes its choices from
:func:`names`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from engine.venues.base import AccountVenueFactory, TradingVenueFactory, VenueFactory

DEFAULT_VENUE = "hyperliquid"

_MODULES: dict[str, str | object] = {
    "hyperliquid": "engine.venues.hyperliquid.factory",
    "bybit": "engine.venues.bybit.factory",
}


class UnknownVenue(LookupError):
    """No venue of that name is registered."""


class VenueNotSupported(LookupError):
    """The venue is registered but does not (yet) provide what the shell needs."""


def register(name: str, factory: str | object) -> None:
    """Register (or replace) venue ``name``: the dotted path of a module that defines
    ``FACTORY`` (imported on first use), or the factory object itself."""
    if not name or not factory:
        raise ValueError("a venue needs a name and a factory")
    _MODULES[name] = factory


def unregister(name: str) -> None:
    """Forget venue ``name`` (tests; the built-in venues are registered at import)."""
    _MODULES.pop(name, None)


def names() -> tuple[str, ...]:
    """The registered venue names, in registration order."""
    return tuple(_MODULES)


def factory(name: str) -> Any:
    """The factory of venue ``name`` (its module's ``FACTORY``, the module imported now)."""
    try:
        entry = _MODULES[name]
    except KeyError:
        raise UnknownVenue(f"unknown venue {name!r}; known: {', '.join(_MODULES)}") from None
    made = importlib.import_module(entry).FACTORY if isinstance(entry, str) else entry
    if getattr(made, "name", None) != name:
        raise UnknownVenue(f"the factory registered as {name!r} is named "
                           f"{getattr(made, 'name', None)!r}")
    return made


def simulator_main(name: str) -> Callable[[list[str]], int]:
    """The ``main(argv)`` of venue ``name``'s simulator (``python -m engine sim --venue``):
    its factory's ``simulator`` names it as ``"module:function"`` (imported now)."""
    spec = getattr(factory(name), "simulator", None)
    if not isinstance(spec, str) or ":" not in spec:
        raise VenueNotSupported(f"venue {name!r} has no simulator")
    module, func = spec.split(":", 1)
    main: Callable[[list[str]], int] = getattr(importlib.import_module(module), func)
    return main


_SHELL = ("instruments", "market_data")
_TRADING = (*_SHELL, "book_store", "execution", "dead_man")
_ACCOUNT = (*_SHELL, "build")


def _with(name: str, methods: tuple[str, ...], what: str) -> Any:
    made = factory(name)
    missing = [m for m in methods if not callable(getattr(made, m, None))]
    if missing:
        raise VenueNotSupported(f"venue {name!r} cannot run {what} yet: its factory has no "
                                f"{', '.join(missing)}")
    return made


def shell_factory(name: str) -> VenueFactory:
    """The factory of venue ``name`` with the shell's part of the interface (instruments and
    a market-data feed: observe mode); :class:`VenueNotSupported` names what is missing."""
    checked: VenueFactory = _with(name, _SHELL, "in the engine's shell")
    return checked


def trading_factory(name: str) -> TradingVenueFactory:
    """The factory of venue ``name`` for the paper and trade modes (also a depth store,
    the order executor and the dead-man switch)."""
    checked: TradingVenueFactory = _with(name, _TRADING, "paper or trade mode")
    return checked


def account_factory(name: str) -> AccountVenueFactory:
    """The factory of venue ``name`` with the shell interface plus ``build`` (the whole
    account venue: the funding shell's Bybit)."""
    checked: AccountVenueFactory = _with(name, _ACCOUNT, "as one account venue")
    return checked
