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


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_T0 = utc_ms(2026, 11, 23, 0, 0)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.floats(_T0, _T0 + 7 * 86_400_000.0),  # any instant of a week
    st.integers(0, 7 * 1440).map(lambda m: _T0 + m * 60_000.0),  # exactly on a minute
    st.tuples(st.integers(0, 7 * 1440), st.sampled_from([-1e-3, -1.0, 1e-3, 1.0, 59_999.5]))
    .map(lambda p: _T0 + p[0] * 60_000.0 + p[1])), min_size=1, max_size=30),
    st.booleans())
def test_cached_is_lookup(times: list[float], enabled: bool) -> None:
    """The hot path's inlined cache check (``lo_ms <= now < hi_ms`` → ``cached_value``) answers
    what ``lookup`` answers, in any order of instants, near minute edges too."""
    cfg = DetectorConfig()
    fast = SessionClock(cfg.sessions, cfg.session_timezone, enabled)
    ref = SessionClock(cfg.sessions, cfg.session_timezone, enabled)
    for t in times:
        assert fast.cached(t) == ref.lookup(t)
        hit = fast.lo_ms <= t < fast.hi_ms
        if hit:
            assert fast.cached_value == ref.lookup(t)
