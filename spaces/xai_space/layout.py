"""The Gradio scaffolding every tab repeats: the model box, the sampling controls, the step slider, result panels."""

from __future__ import annotations

import gradio as gr

from .common import (
    CONCURRENCY,
    MAX_SEED,
    MAX_STEPS,
    SCHEDULER_CHOICES,
    model_choices,
)

# event options of a handler that runs or loads a model: queued with every other model run (one bounded group).
# No `time_limit`: gradio 6 applies it to streaming events only; runs are bounded up front (`common.check_work`).
MODEL_RUN = {"concurrency_limit": CONCURRENCY, "concurrency_id": "model"}
# event options of the step slider: while scrubbing only the last position is drawn, without a spinner
SCRUB = {"trigger_mode": "always_last", "show_progress": "hidden", "concurrency_limit": 4}


def model_box(env_var: str, bundled_label: str, pipeline_name: str, elem_id: str) -> tuple[gr.Dropdown, gr.Markdown]:
    """A row with the model box (the entry of `env_var` first, then the bundled model) and the Markdown for its
    summary (`elem_id` and `f"{elem_id}-info"`)."""
    choices = model_choices(env_var, bundled_label)
    with gr.Row():
        model = gr.Dropdown(
            choices,
            value=choices[0],
            allow_custom_value=True,
            label="Model",
            info=f"Hub id or local folder of a {pipeline_name} (default from ${env_var}).",
            scale=2,
            elem_id=elem_id,
        )
        model_md = gr.Markdown(elem_id=f"{elem_id}-info")
    return model, model_md


def sampling_controls(seed_elem_id: str) -> tuple[gr.Radio, gr.Slider, gr.Number]:
    """The scheduler, step-count and seed inputs of a Generate column (call inside the column)."""
    scheduler = gr.Radio(SCHEDULER_CHOICES, value="ddim", label="Scheduler")
    steps = gr.Slider(1, MAX_STEPS, value=50, step=1, label="Steps")
    seed = gr.Number(0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed", elem_id=seed_elem_id)
    return scheduler, steps, seed


def step_controls(heading: str, elem_id: str, caption_elem_id: str) -> tuple[gr.Slider, gr.Markdown]:
    """The trajectory heading, the recorded-step slider (frozen until a first Generate) and its caption."""
    gr.Markdown(f"### {heading}")
    step_slider = gr.Slider(0, 1, value=0, step=1, label="Recorded step", elem_id=elem_id, interactive=False)
    return step_slider, gr.Markdown(elem_id=caption_elem_id)


def attributions_panel(prefix: str, heatmap_label: str) -> tuple[gr.Button, list]:
    """The Explain button and what it fills: `[heatmap, summary, numbers, zip]` (element ids start with `prefix`)."""
    button = gr.Button("Explain", elem_id=f"{prefix}-explain")
    summary = gr.Markdown(elem_id=f"{prefix}-explain-summary")
    with gr.Row():
        heatmap = gr.Image(label=heatmap_label, type="filepath", elem_id=f"{prefix}-heatmap", height=360)
        with gr.Column():
            numbers = gr.JSON(label="Numbers", max_height=260)
            archive = gr.File(label="Attributions (PNG, JSON, tensors)", interactive=False)
    return button, [heatmap, summary, numbers, archive]


def quality_tab(prefix: str, description: str) -> tuple[gr.Button, list]:
    """A Quality tab with one scores plot: its Evaluate button and the outputs `[summary, plot, report, zip]`."""
    with gr.Tab("Quality"):
        gr.Markdown(description)
        button = gr.Button("Evaluate", elem_id=f"{prefix}-evaluate")
        summary = gr.Markdown(elem_id=f"{prefix}-quality-summary")
        with gr.Row():
            plot = gr.Image(label="Scores", type="filepath", height=300)
            with gr.Column():
                report = gr.JSON(label="Report", max_height=260)
                archive = gr.File(label="Report (JSON, PNG)", interactive=False)
    return button, [summary, plot, report, archive]
