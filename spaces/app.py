"""diffusers-xai dashboard: generate with a diffusion model and explain every generation.

Run `python spaces/app.py`. It works offline with no configuration, using the bundled checkpoints next to this file.
Environment variables:

- `DIFFUSERS_XAI_MODEL`, `DIFFUSERS_XAI_TABULAR_MODEL`, `DIFFUSERS_XAI_TIMESERIES_MODEL`: Hub id or local folder
  of the pipeline each tab shows first.
- `DIFFUSERS_XAI_ALLOWED_MODELS`: comma-separated Hub ids or folders visitors may pick besides those and the bundled
  checkpoints (nothing else is loaded); Hub models are checked from their metadata before download (safetensors only,
  at most `DIFFUSERS_XAI_MAX_DOWNLOAD_MB`, default 256).
- `DIFFUSERS_XAI_WORK_SCALE`: multiplies each tab's per-request budget of steps x batch (default 1).
- `DIFFUSERS_XAI_CONCURRENCY`: how many model runs (generate, explain, evaluate) may run at once (default 1).
- `DIFFUSERS_XAI_MAX_PARAMS`: the largest denoiser a model box accepts (default 50M parameters).
- `GRADIO_SERVER_NAME` / `GRADIO_SERVER_PORT`: read by Gradio itself.

The app calls only the public API of `diffusers_xai`. Each optional feature (explainers, plots, evaluation, the
tabular and time-series pipelines) is looked up at start-up. A section whose feature is missing says
"not available: <reason>".
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import gradio as gr

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the tab modules in `xai_space/`, next to this file

from xai_space import common, images, tabular, timeseries  # noqa: E402
from xai_space.layout import MODEL_RUN  # noqa: E402

__all__ = ["build_demo", "common", "images", "main", "tabular", "timeseries"]

INTRO = """# diffusers-xai dashboard
Generate with a diffusion model, then look inside the generation: the denoising trajectory, attention maps and
attributions of the denoiser, with faithfulness and sanity-check numbers, and how the synthetic data compare
with the real data. Everything runs on CPU from the bundled checkpoints (or models the Space owner allowed)."""


def build_demo() -> gr.Blocks:
    """The dashboard, not yet launched: `build_demo().queue(...).launch()`."""
    ttl = common.FILE_TTL_SECONDS
    with gr.Blocks(title="diffusers-xai dashboard", delete_cache=(ttl, ttl)) as demo:
        gr.Markdown(INTRO)
        with gr.Tabs():
            with gr.Tab("Images", id="images"):
                on_load = images.build_images_tab()
            with gr.Tab("Tabular", id="tabular"):
                on_load += tabular.build_tabular_tab()
            with gr.Tab("Time series", id="timeseries"):
                on_load += timeseries.build_timeseries_tab()
        for fn, inputs, outputs, api_name in on_load:  # loading a model: in the bounded model queue too
            demo.load(fn, inputs, outputs, api_name=api_name, **MODEL_RUN)
    return demo


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    build_demo().queue(default_concurrency_limit=common.CONCURRENCY, max_size=64).launch()


if __name__ == "__main__":
    main()
