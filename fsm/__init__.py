"""Formal state machines (python-statemachine) and the fast tables derived from them."""
