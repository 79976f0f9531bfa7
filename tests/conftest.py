"""Shared fixtures: one Prefect test server for the whole session."""

import os

import pytest


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory):
    """Start ``prefect_test_harness`` once; yields its API URL (for subprocesses)."""
    home = tmp_path_factory.mktemp("prefect_home")
    env = {"PREFECT_HOME": str(home), "DO_NOT_TRACK": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
