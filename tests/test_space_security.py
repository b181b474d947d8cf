"""The Space as a public service: visitors pick only allowed models, Hub models are checked from metadata before any
download, every model-loading handler is in the bounded queue, runs are bounded up front, and errors never show
server paths. Through `gradio_client` against a launched app, with the local Hub server standing in for the Hub."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")
from diffusers import UNet2DModel  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from huggingface_hub import HfApi  # noqa: E402

from diffusers_xai.testing import tiny_pipeline, tiny_tabular_pipeline  # noqa: E402
from tests import hub_fixtures  # noqa: E402
from tests.space_fixtures import load_space_app, serve_space_app  # noqa: E402

local_hub = hub_fixtures.local_hub  # registers the fixture in this module

ALLOWED = "DIFFUSERS_XAI_ALLOWED_MODELS"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return load_space_app("space_app_security", tmp_path_factory.mktemp("space_outputs"))


@pytest.fixture(scope="module")
def server(app):
    with serve_space_app(app) as (demo, url):
        yield demo, url


@pytest.fixture
def client(server, app, monkeypatch):
    monkeypatch.delenv(ALLOWED, raising=False)
    app.common._from_pretrained.cache_clear()
    yield gradio_client.Client(server[1], verbose=False)
    app.common._from_pretrained.cache_clear()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A complete, loadable pipeline folder on the server's disk (that a visitor must not be able to load)."""
    path = tmp_path_factory.mktemp("server") / "private-model"
    tiny_pipeline(seed=1).save_pretrained(path)
    return path


def test_a_visitor_cannot_load_a_server_folder_or_an_unlisted_hub_id(client, folder):
    for typed in (str(folder), "someone/any-model", "/etc"):
        with pytest.raises(AppError, match="is not available on this Space") as info:
            client.predict(typed, "ddim", 2, 0, 1, api_name="/generate")
        assert str(folder.parent) not in str(info.value) and "/etc" not in str(info.value)


def test_the_owner_allow_list_is_loaded(client, app, folder, monkeypatch):
    monkeypatch.setenv(ALLOWED, f"other/model, {folder}")
    assert str(folder) in app.common.model_choices("DIFFUSERS_XAI_MODEL", app.images.BUNDLED_LABEL)
    gallery = client.predict(str(folder), "ddim", 2, 0, 1, api_name="/generate")[0]
    assert len(gallery) == 1


def test_a_model_of_another_modality_is_sent_to_its_tab(client, tmp_path, monkeypatch):
    """The Images tab on an allowed table model said "load it with TabularXAIPipeline.from_pretrained"."""
    table = tmp_path / "table-model"
    tiny_tabular_pipeline()[0].save_pretrained(table)
    monkeypatch.setenv(ALLOWED, str(table))
    with pytest.raises(AppError) as info:
        client.predict(str(table), "ddim", 2, 0, 1, api_name="/generate")
    assert "holds a TabularXAIPipeline, not a DiffusionXAIPipeline: open it in the tabular tab." in str(info.value)
    assert str(tmp_path) not in str(info.value)


def _push(repo_id, files):
    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    for name, data in files.items():
        api.upload_file(path_or_fileobj=data, path_in_repo=name, repo_id=repo_id)


def _cached_weights(local_hub_cache: Path) -> list[str]:
    return sorted(p.name for p in local_hub_cache.rglob("*") if p.suffix in (".safetensors", ".bin"))


def test_hub_models_are_checked_from_metadata_before_download(local_hub, client, app, folder, monkeypatch):
    repo = f"{local_hub.user}/tiny"
    _push(repo, {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()})
    pickled = f"{local_hub.user}/pickled"
    _push(pickled, {"model_index.json": (folder / "model_index.json").read_bytes(), "unet/model.bin": b"\x80" * 64})
    monkeypatch.setenv(ALLOWED, f"{repo},{pickled}")
    cache = Path(os.environ["HF_HUB_CACHE"])

    monkeypatch.setattr(app.common, "MAX_DOWNLOAD_BYTES", 1000)  # the tiny UNet's weights are ~60 kB
    with pytest.raises(AppError, match=rf"{repo}' holds 0.\d MiB of weights and configs; this Space downloads"):
        client.predict(repo, "ddim", 2, 0, 1, api_name="/generate")
    with pytest.raises(AppError, match=rf"{pickled}' has no safetensors weights"):
        client.predict(pickled, "ddim", 2, 0, 1, api_name="/generate")
    assert _cached_weights(cache) == []  # refused from metadata: nothing was downloaded

    monkeypatch.setattr(app.common, "MAX_DOWNLOAD_BYTES", 10 * 2**20)
    n_params = sum(p.numel() for p in UNet2DModel.from_pretrained(folder / "unet").parameters())
    monkeypatch.setattr(app.common, "MAX_PARAMS", n_params - 1)  # read from the safetensors header, not the weights
    with pytest.raises(AppError, match=rf"{repo}' has {n_params / 1e6:.1f}M parameters in its safetensors weights"):
        client.predict(repo, "ddim", 2, 0, 1, api_name="/generate")
    assert _cached_weights(cache) == []

    monkeypatch.setattr(app.common, "MAX_PARAMS", n_params)
    assert len(client.predict(repo, "ddim", 2, 0, 1, api_name="/generate")[0]) == 1
    assert _cached_weights(cache) == ["diffusion_pytorch_model.safetensors"]


def test_every_model_handler_is_in_the_bounded_queue(server):
    demo, _ = server
    by_name = {fn.api_name: fn for fn in demo.fns.values()}
    loaders = ["model_changed", "tabular_model_changed", "timeseries_model_changed", "model_info", "generate"]
    loaders += ["explain", "evaluate", "tabular_generate", "timeseries_generate"]
    for name in loaders:
        assert by_name[name].concurrency_id == "model", name
    # the load-time model summaries are in it too (they load the model)
    on_load = [fn for fn in demo.fns.values() if any(t[1] == "load" for t in fn.targets)]
    assert on_load and {fn.concurrency_id for fn in on_load} == {"model"}


def test_work_is_bounded_up_front(client, app, monkeypatch):
    from xai_space import runs  # every tab's Generate samples through it (importable once `app` is loaded)

    calls = []
    monkeypatch.setattr(runs, "sample_traced", lambda *a, **k: calls.append(a))
    label = app.images.BUNDLED_LABEL
    with pytest.raises(AppError, match=r"Steps x Batch size = 1000 x 16 = 16000 is more than this Space runs"):
        client.predict(label, "ddpm", 1000, 0, 16, api_name="/generate")
    with pytest.raises(gr.Error, match=r"Steps x Rows = 1000 x 500 = 500000 is more than"):
        app.tabular.generate(None, "ddpm", 1000, 0, 500, app.tabular.RANDOM_LABEL)
    with pytest.raises(gr.Error, match=r"Steps x Series = 1000 x 64 = 64000 is more than"):
        app.timeseries.generate(None, "ddpm", 1000, 0, 64)
    assert calls == []  # refused before sampling


def test_errors_never_show_server_paths(client, app, monkeypatch):
    from xai_space import runs  # every tab's Generate samples through it (importable once `app` is loaded)

    def boom(*args, **kwargs):
        raise RuntimeError(f"failed reading {app.common.SPACE_DIR / 'secret.txt'}")

    monkeypatch.setattr(runs, "sample_traced", boom)
    with pytest.raises(AppError) as info:
        client.predict(app.images.BUNDLED_LABEL, "ddim", 2, 0, 1, api_name="/generate")
    assert "Internal error (RuntimeError)" in str(info.value) and str(app.common.SPACE_DIR) not in str(info.value)
    monkeypatch.setattr(runs, "sample_traced", lambda *a, **k: (_ for _ in ()).throw(ValueError("/srv/x bad")))
    with pytest.raises(AppError, match="<path> bad") as info:
        client.predict(app.images.BUNDLED_LABEL, "ddim", 2, 0, 1, api_name="/generate")
    assert "/srv/x" not in str(info.value)
