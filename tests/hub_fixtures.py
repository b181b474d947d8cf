"""pytest fixtures that point `huggingface_hub`, `diffusers` and `datasets` at a [`LocalHubServer`].

Register the fixture in a test module by binding it at module level (a plain assignment, so ruff's F811 does not
flag the test parameters of the same name, as it would for `from tests.hub_fixtures import local_hub`):

```py
from tests import hub_fixtures

local_hub = hub_fixtures.local_hub

def test_roundtrip(local_hub):
    repo_id = f"{local_hub.user}/tiny"
    ...  # create_repo / push_to_hub / from_pretrained(repo_id) / load_dataset(repo_id) all hit the local server
```

Each test gets a fresh server (random port, storage under `tmp_path`), a fake write token in `HF_TOKEN`, and private
caches (HF hub cache, `datasets` cache, diffusers' dynamic-modules cache), so nothing leaks from or into `~/.cache`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from tests.hub_server import LocalHubServer

__all__ = ["local_hub", "point_hf_at"]


def point_hf_at(endpoint: str | None, token: str | None, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Redirect every Hub client in this process to `endpoint`, for the duration of a test.

    `huggingface_hub`, `diffusers` and `datasets` read `HF_ENDPOINT` (and offline/Xet/cache settings) into module
    constants at import time, so setting the environment is not enough once they are imported: the constants are
    patched too. Modules imported later read the patched environment. `token=None` removes every token source
    (env and login cache), for testing the "not logged in" path.
    """
    cache_dir = Path(cache_dir)
    env = {
        "HF_HUB_OFFLINE": "0",
        "HF_DATASETS_OFFLINE": "0",
        "HF_HUB_DISABLE_XET": "1",  # never try the Xet upload/download path (it would hang on a fake server)
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_CACHE": str(cache_dir / "hub"),
        "HF_DATASETS_CACHE": str(cache_dir / "datasets"),
        "HF_MODULES_CACHE": str(cache_dir / "modules"),
        "HF_TOKEN_PATH": str(cache_dir / "no-login" / "token"),
    }
    if endpoint is not None:
        env["HF_ENDPOINT"] = endpoint
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    if token is None:
        monkeypatch.delenv("HF_TOKEN", raising=False)
    else:
        monkeypatch.setenv("HF_TOKEN", token)

    import huggingface_hub
    from huggingface_hub import constants, hf_api
    from huggingface_hub.utils import _http

    patches = {
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_XET": True,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_CACHE": env["HF_HUB_CACHE"],
        "HF_TOKEN_PATH": env["HF_TOKEN_PATH"],
        "HF_STORED_TOKENS_PATH": str(cache_dir / "no-login" / "stored_tokens"),
    }
    if endpoint is not None:
        patches["ENDPOINT"] = endpoint
        patches["HUGGINGFACE_CO_URL_TEMPLATE"] = endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    for name, value in patches.items():
        monkeypatch.setattr(constants, name, value)
    if endpoint is not None:
        # `huggingface_hub.create_repo`, `model_info`, ... are bound methods of a module-level HfApi() whose
        # endpoint was frozen at import.
        monkeypatch.setattr(hf_api.api, "endpoint", endpoint)
    huggingface_hub.HfFileSystem.clear_instance_cache()  # fsspec caches filesystems (and their endpoint)
    _http.close_session()  # drop keep-alive connections of a previous test's server

    if "diffusers" in sys.modules:
        from diffusers.utils import constants as d_constants
        from diffusers.utils import dynamic_modules_utils, hub_utils

        monkeypatch.setattr(dynamic_modules_utils, "HF_MODULES_CACHE", env["HF_MODULES_CACHE"])
        monkeypatch.setattr(sys, "path", list(sys.path))  # diffusers appends the modules cache to sys.path
        if endpoint is not None:
            monkeypatch.setattr(d_constants, "HUGGINGFACE_CO_RESOLVE_ENDPOINT", endpoint)
            monkeypatch.setattr(hub_utils, "HUGGINGFACE_CO_RESOLVE_ENDPOINT", endpoint)
    if "datasets" in sys.modules:
        import datasets.config as ds_config

        monkeypatch.setattr(ds_config, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(ds_config, "HF_DATASETS_CACHE", Path(env["HF_DATASETS_CACHE"]))
        monkeypatch.setattr(ds_config, "HF_MODULES_CACHE", Path(env["HF_MODULES_CACHE"]))
        if endpoint is not None:
            monkeypatch.setattr(ds_config, "HF_ENDPOINT", endpoint)
            monkeypatch.setattr(
                ds_config, "HUB_DATASETS_URL", endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}"
            )


@pytest.fixture
def local_hub(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHubServer]:
    """A running [`LocalHubServer`] with every Hub client of this process pointed at it (and a fake `HF_TOKEN`)."""
    root = tmp_path_factory.mktemp("local_hub")
    modules_before = set(sys.modules)
    with LocalHubServer(root / "storage") as server:
        point_hf_at(server.endpoint, server.token, root / "cache", monkeypatch)
        yield server
        if server.server_errors:
            pytest.fail("local hub server errors:\n" + "\n".join(server.server_errors))
    # community pipelines loaded from the hub live in sys.modules as `diffusers_modules.*`: forget them
    for name in set(sys.modules) - modules_before:
        if name.startswith("diffusers_modules"):
            del sys.modules[name]
    from huggingface_hub.utils import _http

    _http.close_session()


def write_png(path, seed=0):
    """An 8x8 RGB PNG of seeded noise (a figure a card or a push can point at)."""
    rng = np.random.default_rng(seed)
    PIL.Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(path)
    return path
