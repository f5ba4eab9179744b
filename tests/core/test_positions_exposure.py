"""``Position.has_exposure`` (with its no-unconfirmed shortcut) is ``abs(effective) > EPS``."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.positions import EPS, Position

sizes = st.one_of(st.sampled_from([0.0, -0.0, EPS, -EPS, 2 * EPS, 1e-13, 1.0, -3.5]),
                  st.floats(-1e6, 1e6))


@settings(max_examples=300, deadline=None)
@given(sizes, st.dictionaries(st.text(max_size=3), sizes, max_size=3))
def test_has_exposure_is_the_effective_size_beyond_eps(size: float,
                                                       unconfirmed: dict[str, float]) -> None:
    p = Position(0, "xyz:A")
    p.size = size
    p.unconfirmed = dict(unconfirmed)
    total = size
    for v in unconfirmed.values():
        total += v
    assert p.has_exposure is (abs(total) > EPS)
    assert p.effective == total
