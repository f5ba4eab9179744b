"""Trading strategies as pure code: events in, decisions/intents out, injected clock.

:mod:`.funding_basis` is the delta-neutral funding/basis carry (issue 11).
"""
