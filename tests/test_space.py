"""The Gradio dashboard in `spaces/app.py`: its handlers, its API through `gradio_client`, and a headless Chromium.

One app launch and one browser launch per module (both are heavy on a shared CPU). Browser tests are marked
`browser` and skipped when Debian's `chromium` is missing (under `CI=true` they fail instead). Set
`SPACE_SCREENSHOTS=docs/screenshots` to also write the README's screenshots there.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")
from gradio_client.exceptions import AppError  # noqa: E402
from PIL import Image  # noqa: E402

from diffusers_xai import Trace  # noqa: E402
from tests.space_fixtures import load_space_app, serve_space_app  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
BATCH, STEPS, SEED = 3, 10, 7


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """`spaces/app.py` as a module, with its outputs in a temporary folder and no model override."""
    saved = os.environ.pop("DIFFUSERS_XAI_MODEL", None)
    yield load_space_app("space_app", tmp_path_factory.mktemp("space_outputs"))
    if saved is not None:
        os.environ["DIFFUSERS_XAI_MODEL"] = saved


@pytest.fixture(scope="module")
def images(app):
    return app.images


@pytest.fixture(scope="module")
def server(app):
    with serve_space_app(app) as (_, url):
        yield url


@pytest.fixture(scope="module")
def client(server):
    return gradio_client.Client(server, verbose=False)


@pytest.fixture(scope="module")
def generated(images, client):
    return client.predict(images.BUNDLED_LABEL, "ddim", STEPS, SEED, BATCH, api_name="/generate")


# ---------------------------------------------------------------------------------------------------------------
# handlers and helpers, without a server
# ---------------------------------------------------------------------------------------------------------------
def test_check_int_accepts_integral_numbers_and_names_the_field(app):
    assert app.common.check_int("Seed", 3.0, 0, 10) == 3
    for bad in (2.5, True, None, "x", float("nan"), -1, 11):
        with pytest.raises(ValueError, match=r"Seed must be an integer in \[0, 10\], got"):
            app.common.check_int("Seed", bad, 0, 10)


def test_tile_lays_out_at_most_four_columns(images):
    # 16 px upscaled x6 = 96 px cells, 4 columns, 2 rows
    grid = images.tile(np.zeros((6, 16, 16, 1), dtype=np.float32), cell=96, pad=2)
    assert grid.size == (4 * 96 + 5 * 2, 2 * 96 + 3 * 2)
    assert images.upscale(np.ones((16, 16, 1)), 128).size == (128, 128)


def test_model_bounds(app, images, monkeypatch):
    app.common._from_pretrained.cache_clear()
    monkeypatch.setattr(app.common, "MAX_PARAMS", 10)
    try:
        with pytest.raises(ValueError, match="this Space accepts at most"):
            images.load_image_pipeline(None)
    finally:
        app.common._from_pretrained.cache_clear()
    with pytest.raises(ValueError, match="Model '/no/such/model' is not available on this Space"):
        images.load_image_pipeline("/no/such/model")


@pytest.mark.parametrize("tab", ["images", "tabular", "timeseries"])
def test_bundled_checkpoints_are_small_safetensors_and_the_default(app, tab):
    module = getattr(app, tab)
    weights = list(module.BUNDLED_MODEL.rglob("*.safetensors"))
    assert (module.BUNDLED_MODEL / "model_index.json").is_file() and weights
    assert not list(module.BUNDLED_MODEL.rglob("*.bin")) and not list(module.BUNDLED_MODEL.rglob("*.pkl"))
    assert sum(w.stat().st_size for w in weights) < 2 * 2**20
    assert module.source_of(module.BUNDLED_LABEL) == module.source_of(None) == str(module.BUNDLED_MODEL)
    assert app.common.model_choices(module.ENV_MODEL, module.BUNDLED_LABEL)[0] == module.BUNDLED_LABEL


# ---------------------------------------------------------------------------------------------------------------
# the API through gradio_client
# ---------------------------------------------------------------------------------------------------------------
def test_api_endpoints(app, client):
    endpoints = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    images = {"/generate", "/trajectory", "/attention", "/explain", "/analyze_trajectory", "/evaluate", "/model_info"}
    assert images <= endpoints
    assert "/model_changed" not in endpoints  # private
    for tab in ("tabular", "timeseries"):
        kinds = ("generate", "trajectory", "explain", "commit_steps", "evaluate", "model_info")
        assert {f"/{tab}_{kind}" for kind in kinds} <= endpoints


def test_model_info(images, client):
    text = client.predict(images.BUNDLED_LABEL, api_name="/model_info")
    assert "16x16 images, 1 channel(s)" in text and "attention layer(s)" in text


def test_generate_returns_images_trace_and_step_views(generated):
    gallery, trace_path, slider, x_t, x0, caption, layers, samples, cam_layers, info = generated
    assert len(gallery) == BATCH
    assert all(Image.open(g["image"]).size == (128, 128) for g in gallery)  # 16x16 upscaled x8
    trace = Trace.load(trace_path)
    assert len(trace) == STEPS and trace.num_inference_steps == STEPS
    assert tuple(trace.stack("latents").shape) == (STEPS, BATCH, 1, 16, 16)
    assert tuple(trace.stack("pred_original_sample").shape) == (STEPS, BATCH, 1, 16, 16)
    assert trace.attention_layers and [c[1] for c in layers["choices"]] == trace.attention_layers
    assert slider["maximum"] == slider["value"] == STEPS - 1
    assert [c[1] for c in samples["choices"]] == list(range(BATCH))
    assert cam_layers["choices"][0][1] == "default (last up block)" and len(cam_layers["choices"]) > 1
    grid = (3 * 96 + 4 * 2, 96 + 2 * 2)  # one row of three 96 px cells
    assert Image.open(x_t).size == Image.open(x0).size == grid
    assert caption.startswith(f"Step {STEPS} of {STEPS}") and f"{BATCH} sample(s)" in info


def test_generate_is_seeded(images, client, generated):
    again = client.predict(images.BUNDLED_LABEL, "ddim", STEPS, SEED, BATCH, api_name="/generate")
    other = client.predict(images.BUNDLED_LABEL, "ddim", STEPS, SEED + 1, BATCH, api_name="/generate")
    first = Trace.load(generated[1]).stack("latents")
    assert np.array_equal(first.numpy(), Trace.load(again[1]).stack("latents").numpy())
    assert not np.array_equal(first.numpy(), Trace.load(other[1]).stack("latents").numpy())


def test_trajectory_moves_through_the_steps(client, generated):
    first_xt, first_x0, caption = client.predict(0, api_name="/trajectory")
    last_xt, last_x0, _ = client.predict(STEPS - 1, api_name="/trajectory")
    assert caption.startswith(f"Step 1 of {STEPS}")
    assert not np.array_equal(_pixels(first_x0), _pixels(last_x0))
    assert not np.array_equal(_pixels(first_xt), _pixels(last_xt))
    with pytest.raises(AppError, match="greater than maximum value 9"):  # the per-session slider bound
        client.predict(42, api_name="/trajectory")


def test_attention_endpoint(client, generated):
    layer = generated[6]["choices"][0][1]
    overlay, overview, caption = client.predict(layer, 1, 4, -1, -1, api_name="/attention")
    query_overlay, _, _ = client.predict(layer, 1, 4, 8, 8, api_name="/attention")
    assert Image.open(overlay).size[0] > Image.open(overlay).size[1]  # image | map | overlay side by side
    assert Image.open(overview).size[1] > 100 and caption.startswith("Sample 1, `")
    assert "(mean over queries). Step 5 of" in caption
    assert not np.array_equal(_pixels(overlay), _pixels(query_overlay))
    with pytest.raises(AppError, match="nope is not in the list of choices"):
        client.predict("nope", 1, 4, -1, -1, api_name="/attention")
    with pytest.raises(AppError, match=r"Query row must be an integer in \[-1, 15\], got 99"):
        client.predict(layer, 1, 4, 99, 0, api_name="/attention")


def test_explain_endpoint(images, client, generated):
    overlay, curves, sanity, summary, numbers, archive = client.predict(
        "saliency", images.DEFAULT_CAM, 2, STEPS // 2, True, False, api_name="/explain"
    )
    assert Image.open(overlay).size[0] > Image.open(overlay).size[1]
    assert curves is not None and sanity is None
    assert numbers["maps_shape"] == [1, 1, 1, 16, 16] and numbers["sample_index"] == 2
    faith = numbers["faithfulness"]
    assert faith["protocol"] == "magnitude"  # saliency's |gradient| is unsigned: a higher deletion AUC is better
    assert faith["deletion_gain"] == pytest.approx(faith["deletion_auc"] - faith["random_deletion_auc"], abs=1e-5)
    assert summary.startswith("**saliency** at t = ") and f"(gain {faith['deletion_gain']:+.3f})" in summary
    assert "Sanity check" not in summary
    with zipfile.ZipFile(archive) as z:
        names = set(z.namelist())
        assert {"explanation.json", "maps.safetensors", "saliency_overlay.png", "saliency_faithfulness.png"} <= names
        from safetensors.torch import load

        maps = load(z.read("maps.safetensors"))["maps"]
    assert tuple(maps.shape) == (1, 1, 1, 16, 16)
    assert Image.open(overlay).format == "PNG"
    layer = generated[8]["choices"][1][1]  # one block instead of the default (last up block)
    overlay, curves, sanity, summary, numbers, archive = client.predict(
        "gradcam", layer, 0, STEPS // 2, False, False, api_name="/explain"
    )
    assert curves is None and sanity is None and "faithfulness" not in numbers
    assert numbers["maps_shape"] == [1, 1, 1, 16, 16] and summary.startswith("**gradcam** at t = ")
    with pytest.raises(AppError, match="magic is not in the list of choices"):
        client.predict("magic", images.DEFAULT_CAM, 0, 0, False, False, api_name="/explain")


def test_analyze_trajectory_endpoint(client, generated):
    curves, commit, gif, summary, numbers = client.predict(0, api_name="/analyze_trajectory")
    assert Image.open(gif).n_frames == STEPS
    assert Image.open(curves).size[0] > 0 and Image.open(commit).size[0] > 0
    assert len(numbers["x0_distance_to_final"]) == STEPS and numbers["x0_distance_to_final"][-1] == 0
    # each of the 16x16 pixels commits at a whole step of the STEPS - 1 intervals: the mean is a count over them
    pixel_steps = numbers["mean_commit_fraction"] * (STEPS - 1) * 16 * 16
    assert pixel_steps == pytest.approx(round(pixel_steps), abs=1e-3) and 0 < round(pixel_steps) < (STEPS - 1) * 256
    assert f"{100 * numbers['mean_commit_fraction']:.0f}% of the steps" in summary


def test_evaluate_endpoint(client, generated):
    summary, nn_plot, prdc_plot, hist_plot, report, archive = client.predict(api_name="/evaluate")
    assert f"image evaluation: {BATCH} generated vs 1797 real" in summary
    metrics = {m["key"]: m["value"] for m in report["metrics"]}
    # precision counts generated samples (3) and coverage real ones (1797): each is a count over its set
    assert metrics["prdc_precision"] * BATCH == pytest.approx(round(metrics["prdc_precision"] * BATCH), abs=1e-6)
    assert metrics["prdc_coverage"] * 1797 == pytest.approx(round(metrics["prdc_coverage"] * 1797), abs=1e-3)
    assert "Precision (digits-CNN features, k=2)" in summary  # k = batch - 1 for a batch of 3
    assert all(Image.open(p).size[0] > 0 for p in (nn_plot, prdc_plot, hist_plot))
    with zipfile.ZipFile(archive) as z:
        assert {"report.json", "nearest_neighbours.png"} <= set(z.namelist())


def test_invalid_inputs_are_visible_errors(images, client, server):
    label = images.BUNDLED_LABEL
    with pytest.raises(AppError, match="greater than maximum value 16"):
        client.predict(label, "ddim", 5, 0, 17, api_name="/generate")
    with pytest.raises(AppError, match="less than minimum value 1"):
        client.predict(label, "ddim", 0, 0, 1, api_name="/generate")
    with pytest.raises(AppError, match="'euler' .* is not in the list of choices"):
        client.predict(label, "euler", 5, 0, 1, api_name="/generate")
    with pytest.raises(AppError, match="Model '<path>' is not available on this Space"):
        client.predict("/no/such/model", "ddim", 5, 0, 1, api_name="/generate")
    with pytest.raises(AppError, match="Nothing generated yet: click Generate first"):
        gradio_client.Client(server, verbose=False).predict(0, api_name="/trajectory")  # a fresh session
    # the app is still serving after all of that
    assert len(client.predict(label, "dpmsolver", 2, 0, 1, api_name="/generate")[0]) == 1
    with pytest.raises(AppError, match="Quality metrics need at least 2 generated images"):
        client.predict(api_name="/evaluate")


def test_handlers_validate_what_the_ui_cannot(app, images, generated):
    """API clients can send anything: the handlers check it again and say what was wrong."""
    state = {"trace_path": generated[1], "model": str(images.BUNDLED_MODEL), "scheduler": "ddim"}
    state["num_inference_steps"] = STEPS
    with pytest.raises(gr.Error, match=r"Recorded step must be an integer in \[0, 9\], got 42"):
        images.show_step(state, 42)
    with pytest.raises(gr.Error, match="Unknown attention layer 'nope'; recorded layers:"):
        images.show_attention(state, "nope", 0, 0, -1, -1)
    layer = Trace.load(generated[1]).attention_layers[0]
    with pytest.raises(gr.Error, match=r"Sample must be an integer in \[0, 2\], got 3"):
        images.show_attention(state, layer, 3, 0, -1, -1)
    with pytest.raises(gr.Error, match="Unknown explanation method 'magic'"):
        images.explain(state, "magic", images.DEFAULT_CAM, 0, 0, False, False)
    with pytest.raises(gr.Error, match="Unknown scheduler 'euler'; choose one of"):
        images.generate(images.BUNDLED_LABEL, "euler", 5, 0, 1)
    with pytest.raises(gr.Error, match=r"Steps must be an integer in \[1, 1000\], got 1000.5"):
        images.generate(images.BUNDLED_LABEL, "ddim", 1000.5, 0, 1)
    with pytest.raises(gr.Error, match="This trace has expired"):
        images.show_step({"trace_path": str(app.common.OUTPUT_DIR / "gone.safetensors")}, 0)


# ---------------------------------------------------------------------------------------------------------------
# a real browser
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def page(server):
    # locally a missing browser skips these tests; under CI=true it fails the run (CI must run them for real)
    missing = pytest.fail if os.environ.get("CI", "").lower() == "true" else pytest.skip
    if not os.path.exists(CHROMIUM):
        missing(f"Debian's chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")
    try:
        from playwright import sync_api
    except ImportError:
        missing("playwright is not installed (pip install -e '.[dev]')")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1280, "height": 1000})
        tab.set_default_timeout(90_000)
        tab.goto(server)
        yield tab
        browser.close()


def _screenshot(page, tmp_path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    target = os.environ.get("SPACE_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)
    return path


def _wait_for_new_image(page, selector: str, old_src: str | None) -> str:
    page.wait_for_function(
        "([sel, old]) => { const img = document.querySelector(sel); return img && img.src && img.src !== old; }",
        arg=[f"{selector} img", old_src],
    )
    return page.locator(f"{selector} img").first.get_attribute("src")


@pytest.mark.browser
def test_browser_generate_trajectory_explain(page, tmp_path):
    page.wait_for_selector("#generate")
    page.locator("#seed input").fill("5")
    page.locator("#generate").click()
    page.wait_for_function("() => document.querySelectorAll('#gallery img').length === 8")
    last_x0 = _wait_for_new_image(page, "#x0-image", None)
    assert "Step 50 of 50" in page.locator("#step-caption").inner_text()

    # the step slider: back to the first step, the predicted x0 changes
    page.locator("#step-slider input[type=range]").focus()
    page.keyboard.press("Home")
    first_x0 = _wait_for_new_image(page, "#x0-image", last_x0)
    assert first_x0 != last_x0
    page.wait_for_function("() => document.querySelector('#step-caption').innerText.includes('Step 1 of 50')")
    page.keyboard.press("End")
    _wait_for_new_image(page, "#x0-image", first_x0)
    # explain a mid-trajectory step (t around 500), where the maps say the most
    page.keyboard.press("Home")
    for _ in range(25):
        page.keyboard.press("ArrowRight")
    page.wait_for_function("() => document.querySelector('#step-caption').innerText.includes('Step 26 of 50')")

    # attention of the selected layer at the last step
    page.locator("#show-attention").click()
    _wait_for_new_image(page, "#attention-image", None)
    _wait_for_new_image(page, "#attention-all", None)
    assert _screenshot(page, tmp_path, "images_attention").stat().st_size > 0

    # an explanation with faithfulness numbers
    page.get_by_role("tab", name="Explain").click()
    page.locator("#method input").click()
    page.get_by_role("option", name="saliency", exact=True).click()
    page.locator("#explain-button").click()
    _wait_for_new_image(page, "#explain-image", None)
    _wait_for_new_image(page, "#faithfulness-image", None)
    _wait_for_new_image(page, "#sanity-image", None)
    assert "deletion_auc" in page.locator("#explain-numbers").inner_text()
    assert "Sanity check: SSIM" in page.locator("#explain-summary").inner_text()
    _screenshot(page, tmp_path, "images_explain")

    if not os.environ.get("SPACE_SCREENSHOTS"):
        return  # the two sections below have API tests; the browser visits them only to screenshot them
    page.get_by_role("tab", name="Trajectory analysis").click()
    page.locator("#analyze").click()
    _wait_for_new_image(page, "#commit-steps", None)
    _screenshot(page, tmp_path, "images_trajectory")

    page.get_by_role("tab", name="Quality").click()
    page.locator("#evaluate").click()
    _wait_for_new_image(page, "#nn-plot", None)
    assert "8 generated vs 1797 real" in page.locator("#quality-summary").inner_text()
    _screenshot(page, tmp_path, "images_quality")


@pytest.mark.browser
def test_browser_other_tabs(app, page, tmp_path):
    page.wait_for_selector("#generate")
    for tab, name in (("Tabular", "tabular"), ("Time series", "timeseries")):
        page.get_by_role("tab", name=tab, exact=True).click()
        assert page.get_by_role("tab", name=tab, exact=True).get_attribute("aria-selected") == "true"
        if name == "tabular":
            page.locator("#tabular-generate").click()
            page.wait_for_function(
                "() => Number(document.querySelector('#tabular-rows [role=grid]')?.getAttribute('aria-rowcount')) > 10"
            )
            assert "proline" in page.locator("#tabular-rows").inner_text()  # the wine table's columns, decoded
        else:
            page.locator("#series-generate").click()
            series = _wait_for_new_image(page, "#series-plot", None)
            step = _wait_for_new_image(page, "#series-step-plot", None)
            assert series != step  # two different plots: the windows, and x_t / x0 at the last step
        shot = np.asarray(Image.open(_screenshot(page, tmp_path, name)).convert("L"))
        assert shot.std() > 5  # a rendered page, not a blank one
    page.get_by_role("tab", name="Images", exact=True).click()
    assert page.get_by_role("tab", name="Images", exact=True).get_attribute("aria-selected") == "true"
