"""Where the operator's control files live: the state directory, the kill file, request files.

The state directory is ``[ops] state_dir`` when set, else ``$STATE_DIRECTORY`` (systemd's
``StateDirectory=``; the first entry when it lists several), else ``[records] dir``. Relative
paths are taken from the working directory, like ``[records] dir``.

Files in it (all plain files an operator can create and remove by hand):

* ``[ops] kill_file`` (default ``KILL``): while it exists the engine does not trade; a running
  engine that sees it (within a second) stops new entries, cancels, flattens and exits 0.
  ``python -m engine kill`` creates it, ``python -m engine kill --clear`` removes it.
* ``RESET_HARD_STOP``: ``python -m engine reset-hard-stop`` asks the engine to release a latched
  hard stop (and circuit breakers); consumed by the engine.
* ``FLATTEN``: ``python -m engine flatten`` asks the engine to flatten every position now
  (reduce-only), without stopping; consumed by the engine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from engine.config import EngineConfig

RESET_FILE = "RESET_HARD_STOP"
FLATTEN_FILE = "FLATTEN"
KILL_ENV = "ENGINE_KILL"


def resolve_state_dir(cfg: EngineConfig, env: Mapping[str, str] | None = None) -> Path:
    """The directory holding the kill file and the operator's request files."""
    env = os.environ if env is None else env
    if cfg.ops.state_dir:
        return Path(cfg.ops.state_dir)
    state = env.get("STATE_DIRECTORY", "")
    if state:
        return Path(state.split(":")[0])
    return Path(cfg.records.dir)


def kill_file_path(cfg: EngineConfig, env: Mapping[str, str] | None = None) -> Path:
    """``[ops] kill_file``; a relative name is taken inside the state directory."""
    p = Path(cfg.ops.kill_file)
    return p if p.is_absolute() else resolve_state_dir(cfg, env) / p


def kill_env_set(env: Mapping[str, str] | None = None) -> bool:
    """``ENGINE_KILL`` set to a true value (1, true, yes, on) at start."""
    env = os.environ if env is None else env
    return env.get(KILL_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def write_request(path: Path, text: str) -> None:
    """Create a request/kill file atomically enough for a poller (write, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, "utf-8")
    os.replace(tmp, path)


def consume_request(path: Path) -> bool:
    """True when the request file existed and was removed by this call."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
