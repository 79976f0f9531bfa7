"""Environment defaults for running the flow unattended against Prefect's ephemeral API.

Prefect reads its settings when it is first imported, so call :func:`prefect_env_defaults`
before anything imports ``prefect`` (``flows.flow`` does so when images are left to compute). Values already in the environment
win: these are defaults, never overrides.

Examples
--------
>>> import os
>>> prefect_env_defaults(environ=(env := {"DO_NOT_TRACK": "0"}))
>>> env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"], env["DO_NOT_TRACK"]
('180', '0')
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

__all__ = ["prefect_env_defaults"]


def prefect_env_defaults(verbose: bool = False,
                         environ: MutableMapping[str, str] | None = None) -> None:
    """Set the ephemeral-server start-up timeout (its start takes ~1 min on a small machine),
    switch off analytics (no outbound network), and quieten Prefect's logs unless ``verbose``
    (its task-failure lines too: each failure is already one ``failed`` line)."""
    env = os.environ if environ is None else environ
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("DO_NOT_TRACK", "1")
    if not verbose:
        env.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        # a failed task is reported once, by the run's own `failed` line (the task's state in
        # Prefect's UI still says why it failed)
        env.setdefault("PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL", "CRITICAL")
