"""The tab of a registered modality that has no specialised one: load its pipeline, sample, show the numbers.

The app builds one tab per modality in `diffusers_xai.list_modalities()`; a modality registered by a plug-in
(`diffusers_xai.register_modality`) gets this tab with nothing added to the Space. It needs only what every
pipeline built on `diffusers_xai.XAIPipelineMixin` has: `from_pretrained`, `set_scheduler` and `sample()`.
"""

from __future__ import annotations

from functools import partial

import gradio as gr
import torch

from .common import (
    SPACE_DIR,
    check_int,
    check_steps,
    handle_errors,
    load_pipeline,
    resolve_source,
    with_scheduler,
)
from .layout import MODEL_RUN, sampling_controls

__all__ = ["MAX_SAMPLES", "build_generic_tab", "generate"]

MAX_SAMPLES = 256
SHOWN_SAMPLES = 16  # the JSON panel lists the first samples; the summary covers all of them


@handle_errors
def generate(modality, source: str, scheduler: str, num_inference_steps, seed, num_samples) -> dict:
    """Sample `num_samples` from the `modality.pipeline_class` saved at `source` (a folder or Hub id on the Space
    owner's allow-list); returns the model-space samples' shape, per-dimension mean and std, and the first ones."""
    if not source or not str(source).strip():
        raise ValueError(f"Enter the folder or Hub id of a {modality.pipeline_class.__name__}.")
    source = resolve_source(source, "", SPACE_DIR / "-")  # only what the Space owner allowed (no bundled model)
    pipe = with_scheduler(load_pipeline(modality.pipeline_class, source, SPACE_DIR / "-"), scheduler)
    steps = check_steps(pipe, num_inference_steps)
    n = check_int("Samples", num_samples, 1, MAX_SAMPLES)
    generator = torch.Generator("cpu").manual_seed(check_int("Seed", seed, 0, 2**32 - 1))
    x = pipe.sample(batch_size=n, generator=generator, num_inference_steps=steps).final_sample.float().cpu()
    flat = x.reshape(n, -1)
    return {
        "modality": modality.name,
        "shape": list(x.shape),
        "mean": flat.mean(0).tolist(),
        "std": flat.std(0, unbiased=False).tolist(),
        "samples": x[:SHOWN_SAMPLES].tolist(),
    }


def build_generic_tab(modality) -> list[tuple]:
    """A modality's generic tab (call inside a `gr.Tab`); returns its page-load events (none)."""
    name, pipeline = modality.name, modality.pipeline_class.__name__
    gr.Markdown(f"Generate with a `{pipeline}` ({modality.name} modality) and look at the samples in model space.")
    model = gr.Textbox(label="Model", info=f"Local folder or Hub id of a {pipeline}.", elem_id=f"{name}-model")
    with gr.Row():
        with gr.Column():
            scheduler, steps, seed = sampling_controls(f"{name}-seed")
            count = gr.Slider(1, MAX_SAMPLES, value=8, step=1, label="Samples")
            button = gr.Button("Generate", variant="primary", elem_id=f"{name}-generate")
        samples = gr.JSON(label="Samples (model space)")
    inputs = [model, scheduler, steps, seed, count]
    button.click(partial(generate, modality), inputs, [samples], api_name=f"{name}_generate", **MODEL_RUN)
    return []
