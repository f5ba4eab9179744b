"""``python -m engine.sim``: run the exchange simulator (see engine.sim.cli)."""

from __future__ import annotations

import sys

from engine.sim.cli import main

if __name__ == "__main__":
    sys.exit(main())
