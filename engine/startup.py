"""The startup failure vocabulary shared by the shell (``engine.app``) and ``engine check``
(``engine.ops.check``): the documented exit codes, :class:`StartupError`, and the records-dir
writability probe.

It sits below both so that ``engine.ops`` never imports ``engine.app`` (docs/architecture.md,
"Layers"); ``engine.app`` re-exports every name for its callers.
"""

from __future__ import annotations

import os
from pathlib import Path

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_CONFIG = 2


class StartupError(Exception):
    """The engine cannot start (bad markets, unwritable data dir, venue unreachable)."""

    def __init__(self, message: str, exit_code: int = EXIT_RUNTIME) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def check_records_dir(path: Path) -> None:
    """Create the data directory and prove it is writable before anything connects."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"ok\n")
        probe.unlink()
    except OSError as exc:
        raise StartupError(
            f"records dir {path} is not writable: {exc.strerror} (errno {exc.errno}); "
            "fix its ownership/permissions or set [records] dir", EXIT_CONFIG) from None
