"""A tiny synthetic folder for the flow tests (the Prefect server fixture is in tests/conftest.py)."""

import pytest


@pytest.fixture(scope="session")
def sim_folder(tmp_path_factory):
    """Three small synthetic TIFFs (two single-channel, one two-channel) and their truth."""
    from pipeline.simulate import simulate_folder

    root = tmp_path_factory.mktemp("sim")
    simulate_folder(root / "images", truth_dir=root / "truth", noise=0.02, shape=(128, 128),
                    cases=[("smooth", 1), ("step", 1), ("lognormal", 2)], seed=1)
    return root
