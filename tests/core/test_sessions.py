"""Session multipliers know weekends and daylight saving (fixes predecessor L22)."""

from __future__ import annotations

from engine.config import DetectorConfig
from engine.core.sessions import SessionClock, utc_ms


def _clock() -> SessionClock:
    cfg = DetectorConfig()
    return SessionClock(cfg.sessions, cfg.session_timezone, True)


def test_us_open_in_winter_and_summer() -> None:
    c = _clock()
    # Monday 2026-11-23 14:45 UTC = 09:45 EST -> us_open
    assert c.lookup(utc_ms(2026, 11, 23, 14, 45))[0] == "us_open"
    # Monday 2026-07-06 13:45 UTC = 09:45 EDT -> us_open (a fixed-UTC window would miss it)
    assert c.lookup(utc_ms(2026, 7, 6, 13, 45))[0] == "us_open"
    # Monday 2026-11-23 13:45 UTC = 08:45 EST -> none
    assert c.lookup(utc_ms(2026, 11, 23, 13, 45))[0] == "none"


def test_us_active_and_multipliers() -> None:
    c = _clock()
    name, thr, size = c.lookup(utc_ms(2026, 11, 24, 17, 0))  # 12:00 EST Tuesday
    assert (name, thr, size) == ("us_active", 1.5, 0.75)
    assert c.lookup(utc_ms(2026, 11, 24, 21, 0))[0] == "none"  # 16:00 EST: closed


def test_weekends_have_no_session() -> None:
    c = _clock()
    assert c.lookup(utc_ms(2026, 11, 21, 15, 0))[0] == "none"  # Saturday 10:00 EST
    assert c.lookup(utc_ms(2026, 11, 22, 17, 0))[0] == "none"  # Sunday


def test_disabled_clock() -> None:
    cfg = DetectorConfig()
    c = SessionClock(cfg.sessions, cfg.session_timezone, False)
    assert c.lookup(utc_ms(2026, 11, 23, 14, 45)) == ("none", 1.0, 1.0)


def test_cache_per_minute_is_consistent() -> None:
    c = _clock()
    t = utc_ms(2026, 11, 23, 15, 59)  # 10:59 EST
    assert c.lookup(t + 59_000)[0] == "us_open"
    assert c.lookup(t + 60_000)[0] == "us_active"  # 11:00 EST
