import atexit
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# Idle OpenMP threads must not spin on a shared 2-core machine (measured: up to 15x slower sklearn/torch steps).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# The tiny test models run faster on one intra-op thread than on two (a 73-test subset: 333 s at 1 thread, 429 s at 2,
# back to back on the 2-core CI machine); set before torch is imported, and inherited by subprocesses (accelerate
# launch's two ranks then get one core each). An OMP_NUM_THREADS of your own wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# `datasets` caches a generated folder by its name and card metadata (not the files' contents), so a test that loads
# `tmp_path / "a"` could read rows cached by an earlier run of the suite with other code: every run gets its own cache
# (set before `datasets` is imported; subprocesses inherit it).
_DATASETS_CACHE = tempfile.mkdtemp(prefix="dxai-datasets-cache-")
os.environ["HF_DATASETS_CACHE"] = _DATASETS_CACHE
atexit.register(shutil.rmtree, _DATASETS_CACHE, ignore_errors=True)


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


@pytest.fixture(scope="module")
def pipe():
    """The default tiny image pipeline (`diffusers_xai.testing.tiny_pipeline()`: DDPM, seed 0), built once per test
    module; a module that needs another one defines its own `pipe`."""
    from diffusers_xai.testing import tiny_pipeline

    return tiny_pipeline()


@pytest.fixture(scope="module")
def wine_pipe():
    """`(pipeline, wine frame)` from `diffusers_xai.testing.tiny_tabular_pipeline()`, built once per test module."""
    from diffusers_xai.testing import tiny_tabular_pipeline

    return tiny_tabular_pipeline()


# The local Hub server fixture (tests/hub_server.py), available to every test module.
from tests.hub_fixtures import local_hub  # noqa: E402, F401
