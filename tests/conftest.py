import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# Idle OpenMP threads must not spin on a shared 2-core machine (measured: up to 15x slower sklearn/torch steps).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_collection_modifyitems(config, items):
    # Networked tests only run when explicitly opted in (the real Hub is unreachable on CI machines).
    if os.environ.get("RUN_NETWORK") == "1":
        return
    skip = pytest.mark.skip(reason="needs network; set RUN_NETWORK=1 to run")
    for item in items:
        if "network" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def one_thread():
    """Torch on one intra-op thread for the test (`pytestmark = pytest.mark.usefixtures("one_thread")`)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# The local Hub server fixture (tests/hub_server.py), available to every test module.
from tests.hub_fixtures import local_hub  # noqa: E402, F401
