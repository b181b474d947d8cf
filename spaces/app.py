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

The app calls only the public API of `diffusers_xai` and builds one tab per registered modality
(`diffusers_xai.list_modalities()`): the image, tabular and time-series tabs are specialised, any other modality gets
a generic Generate tab. Each optional feature (explainers, plots, evaluation) is looked up at start-up. A section
whose feature is missing says "not available: <reason>".
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import gradio as gr

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the tab modules in `xai_space/`, next to this file

from xai_space import common, generic, images, tabular, timeseries  # noqa: E402
from xai_space.layout import MODEL_RUN  # noqa: E402

import diffusers_xai  # noqa: E402

__all__ = ["SPECIALISED_TABS", "build_demo", "common", "generic", "images", "main", "tabular", "timeseries"]

# modality name → (tab label, tab id, builder); any other registered modality gets `generic.build_generic_tab`
SPECIALISED_TABS = {
    "image": ("Images", "images", images.build_images_tab),
    "tabular": ("Tabular", "tabular", tabular.build_tabular_tab),
    "timeseries": ("Time series", "timeseries", timeseries.build_timeseries_tab),
}

INTRO = """# diffusers-xai dashboard
Generate with a diffusion model, then look inside the generation: the denoising trajectory, attention maps and
attributions of the denoiser, with faithfulness and sanity-check numbers, and how the synthetic data compare
with the real data. Everything runs on CPU from the bundled checkpoints (or models the Space owner allowed)."""


def build_demo() -> gr.Blocks:
    """The dashboard, not yet launched: `build_demo().queue(...).launch()`."""
    ttl = common.FILE_TTL_SECONDS
    with gr.Blocks(title="diffusers-xai dashboard", delete_cache=(ttl, ttl)) as demo:
        gr.Markdown(INTRO)
        on_load = []
        with gr.Tabs():
            for modality in diffusers_xai.list_modalities():  # one tab per registered modality
                label, tab_id, build = SPECIALISED_TABS.get(modality.name, (modality.name, modality.name, None))
                with gr.Tab(label, id=tab_id):
                    on_load += build() if build is not None else generic.build_generic_tab(modality)
        for fn, inputs, outputs, api_name in on_load:  # loading a model: in the bounded model queue too
            demo.load(fn, inputs, outputs, api_name=api_name, **MODEL_RUN)
    return demo


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    build_demo().queue(default_concurrency_limit=common.CONCURRENCY, max_size=64).launch()


if __name__ == "__main__":
    main()
