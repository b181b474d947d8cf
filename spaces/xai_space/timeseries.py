"""The Time series tab: generate windows with a `TimeSeriesXAIPipeline`, follow x0, per-time-step attributions."""

from __future__ import annotations

import math

import gradio as gr
import numpy as np
import torch
from matplotlib.figure import Figure
from safetensors.torch import load_file

from diffusers_xai import TimeSeriesXAIPipeline
from diffusers_xai.evaluation import evaluate_timeseries
from diffusers_xai.explain import (
    DenoiserAttribution,
    DenoiserShap,
    series_commit_steps,
    series_target,
    step_trace,
)
from diffusers_xai.modalities.timeseries import make_sines
from diffusers_xai.viz import plot_series_attributions, plot_series_commit_steps

from .common import (
    FILE_TTL_SECONDS,
    MAX_SEED,
    MODEL_LOCK,
    SPACE_DIR,
    check_choice,
    check_int,
    check_work,
    count_parameters,
    denoiser_of,
    display_name,
    generation_info,
    handle_errors,
    load_pipeline,
    load_trace,
    new_output_path,
    recorded_step,
    resolve_source,
    save_tensors,
    save_text,
    state_file,
    step_caption,
    step_slider_update,
    verdicts_markdown,
)
from .layout import MODEL_RUN, SCRUB, attributions_panel, model_box, quality_tab, sampling_controls, step_controls
from .runs import generation_state, quality_results, sample_traced, sampling_pipeline, save_attributions

BUNDLED_MODEL = SPACE_DIR / "sines-timeseries"
BUNDLED_LABEL = "sines-timeseries (bundled, offline)"
ENV_MODEL = "DIFFUSERS_XAI_TIMESERIES_MODEL"
MAX_SERIES = 64
# steps x series per Generate (250 steps of 64 windows)
MAX_WORK = 16_000
PLOTTED_SERIES = 8
REAL_SERIES = 1000  # real sines drawn for the quality metrics (the bundled model's data is generated, seed 0)
MIN_EVALUATED_SERIES = 8
EVALUATION_ITERATIONS = 300  # TimeGAN's discriminative/predictive networks: 2000/5000 by default, tens of seconds
ALL_CHANNELS = "all channels"
METHODS = ("integrated_gradients", "shap")


# ---------------------------------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------------------------------
def source_of(model: str | None) -> str:
    return resolve_source(model, BUNDLED_LABEL, BUNDLED_MODEL)


def load_series_pipeline(model: str | None):
    return load_pipeline(TimeSeriesXAIPipeline, source_of(model), BUNDLED_MODEL)


@handle_errors
def model_info(model: str | None) -> str:
    pipe = load_series_pipeline(model)
    pre = pipe.preprocessor
    c, length = pre.sample_shape
    n_params = count_parameters(denoiser_of(pipe))
    name = display_name(source_of(model), BUNDLED_LABEL, BUNDLED_MODEL)
    return (
        f"**{name}**: windows of {length} steps x {c} channel(s) ({', '.join(pre.channels)}), "
        f"{n_params / 1e6:.2f}M parameters, T={pipe.scheduler.config.num_train_timesteps}."
    )


# ---------------------------------------------------------------------------------------------------------------
# plots (matplotlib's object API: no pyplot state shared between Gradio's worker threads)
# ---------------------------------------------------------------------------------------------------------------
def plot_series(panels: list[tuple[str, np.ndarray]], channels: list[str], path, ylabel: str = "") -> str:
    """One subplot per `(title, [L, C])` window, one line per channel; saved as a PNG."""
    cols = min(len(panels), 4)
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(3.2 * cols, 2.2 * rows + 0.4), dpi=100, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (title, window) in zip(axes.flat, panels):
        for j, name in enumerate(channels):
            ax.plot(window[:, j], linewidth=1.2, label=name)
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_ylabel(ylabel, fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6, loc="best")
    fig.savefig(path)
    return str(path)


# ---------------------------------------------------------------------------------------------------------------
# handlers
# ---------------------------------------------------------------------------------------------------------------
def _step_plot(pipe, trace, position) -> tuple[str, str]:
    position, step, _ = recorded_step(trace, position)
    channels = pipe.preprocessor.channels
    n = min(PLOTTED_SERIES // 2, step.latents.shape[0])
    panels = []
    for i in range(n):  # model space [B, C, L] → [L, C]
        panels.append((f"series {i}: x_t", step.latents[i].float().T.numpy()))
        panels.append((f"series {i}: predicted x0", step.pred_original_sample[i].float().T.numpy()))
    path = plot_series(panels, channels, new_output_path("series-step", ".png"), ylabel="model space")
    return path, step_caption(trace, position)


@handle_errors
def generate(
    model,
    scheduler,
    num_inference_steps,
    seed,
    num_series,
    progress=gr.Progress(track_tqdm=True),  # noqa: B008 (Gradio finds its progress tracker by this default)
):
    """Generate windows (with a trace), save them, plot the first ones and the last recorded step."""
    seed = check_int("Seed", seed, 0, MAX_SEED)
    num_series = check_int("Series", num_series, 1, MAX_SERIES)
    pipe, num_inference_steps = sampling_pipeline(
        load_series_pipeline, model, scheduler, num_inference_steps, progress
    )
    check_work("Series", num_inference_steps, num_series, MAX_WORK)
    out = sample_traced(pipe, seed, num_inference_steps, num_series=num_series, output_type="np")
    series = np.asarray(out.series, dtype=np.float32)  # [N, L, C], original units
    channels = pipe.preprocessor.channels
    trace = out.trace
    series_path = save_tensors({"series": torch.from_numpy(series)}, new_output_path("series", ".safetensors"))
    state = generation_state(
        trace, "series-trace", source_of(model), scheduler, num_inference_steps, series_path=str(series_path)
    )
    n, length, c = series.shape
    header = "series,time," + ",".join(channels)
    lines = [f"{i},{t}," + ",".join(f"{v:.6g}" for v in series[i, t]) for i in range(n) for t in range(length)]
    csv_path = save_text("\n".join([header, *lines]) + "\n", new_output_path("series", ".csv"))
    panels = [(f"series {i}", series[i]) for i in range(min(n, PLOTTED_SERIES))]
    plot = plot_series(panels, channels, new_output_path("series-plot", ".png"))
    last = len(trace) - 1
    step_plot, caption = _step_plot(pipe, trace, last)
    return (
        plot,
        str(csv_path),
        state,
        step_slider_update(trace, last),
        step_plot,
        caption,
        gr.Dropdown(choices=list(range(n)), value=0),
        gr.Dropdown(choices=[ALL_CHANNELS, *channels], value=ALL_CHANNELS),
        gr.Slider(minimum=-1, maximum=length - 1, value=-1, step=1),
        generation_info(f"{n} window(s)", scheduler, num_inference_steps, seed, trace),
    )


@handle_errors
def show_step(state, position):
    """x_t and the predicted x0 of the first windows at one recorded step (model space)."""
    trace = load_trace(state)
    return _step_plot(load_series_pipeline(state["model"]), trace, position)


@handle_errors
def explain(state, method, sample, channel, time, position, progress=gr.Progress(track_tqdm=True)):  # noqa: B008
    """Attribute a region of one window's predicted x0 to every element of its x_t at one recorded step."""
    check_choice("method", method, METHODS)
    trace = load_trace(state)
    pipe = load_series_pipeline(state["model"])
    channels = pipe.preprocessor.channels
    check_choice("channel", channel, [ALL_CHANNELS, *channels])
    position, step, sample = recorded_step(trace, position, sample)
    length = step.latents.shape[-1]
    time = check_int("Time step", time, -1, length - 1)
    progress(0, desc=f"Explaining with {method}")
    with MODEL_LOCK:
        region = series_target(
            channels, length, None if channel == ALL_CHANNELS else channel, None if time < 0 else time
        )
        explainer = DenoiserShap(pipe) if method == "shap" else DenoiserAttribution(pipe, method)
        explanation = explainer.attribute(
            step_trace(step.latents[sample : sample + 1].float(), step.timestep, step.step_index),
            target=region,
        )
    folder = new_output_path(f"series-{method}")
    folder.mkdir()
    title = f"{method}, t = {step.timestep}, target {channel} / {'all' if time < 0 else time}"
    path = str(folder / f"{method}_series.png")
    plot = plot_series_attributions(explanation, path, sample=0, step=0, channels=channels, title=title)
    per_time = explanation.attributions[0, 0].abs().sum(dim=0)
    per_channel = explanation.attributions[0, 0].abs().sum(dim=1)
    numbers = {
        "method": method,
        "timestep": int(step.timestep),
        "step_index": int(step.step_index),
        "sample": sample,
        "target": {"channel": channel, "time": "all" if time < 0 else time},
        "per_time_step": [round(float(v), 6) for v in per_time],
        "per_channel": {c: round(float(v), 6) for c, v in zip(channels, per_channel)},
    }
    archive = save_attributions(folder, numbers, explanation.attributions)
    summary = (
        f"**{method}** at t = {step.timestep}, window {sample}, target {channel} / "
        f"{'every time step' if time < 0 else f'time step {time}'}: the most influential time step of x_t is "
        f"{int(per_time.argmax())} and the most influential channel `{channels[int(per_channel.argmax())]}`."
    )
    return plot, summary, numbers, archive


@handle_errors
def commit(state):
    """When each time step of each channel settles along the trajectory of x0."""
    trace = load_trace(state)
    pipe = load_series_pipeline(state["model"])
    result = series_commit_steps(trace, channels=pipe.preprocessor.channels)
    plot = plot_series_commit_steps(result, str(new_output_path("series-commit", ".png")))
    per_time = result.per_time_step()
    numbers = {"per_time_step": [round(float(v), 4) for v in per_time]}
    summary = (
        f"Time step {int(per_time.argmin())} settles earliest and time step {int(per_time.argmax())} last (mean "
        "commit step over windows and channels, as a fraction of the run)."
    )
    return plot, summary, numbers


@handle_errors
def evaluate(state, progress=gr.Progress()):  # noqa: B008
    """TimeGAN's discriminative and predictive scores, autocorrelation and embedding FID against real sines."""
    load_trace(state)
    if state["model"] != str(BUNDLED_MODEL):
        raise ValueError(
            "Quality metrics compare with the real series the model was trained on, which are known only for the "
            "bundled model (TimeGAN sines)."
        )
    synthetic = load_file(state_file(state, "series_path"))["series"].numpy()  # [N, L, C]
    if synthetic.shape[0] < MIN_EVALUATED_SERIES:
        raise ValueError(f"Quality metrics need at least {MIN_EVALUATED_SERIES} windows; generate more series.")
    n, length, c = synthetic.shape
    real = make_sines(num_series=REAL_SERIES, sequence_length=length, num_channels=c, seed=1)
    progress(0, desc="Evaluating against real sines")
    folder = new_output_path("series-quality")
    with MODEL_LOCK:  # CPU-heavy: queued with the model runs
        report = evaluate_timeseries(
            real,
            synthetic,
            discriminative_iterations=EVALUATION_ITERATIONS,
            predictive_iterations=EVALUATION_ITERATIONS,
            output_dir=folder,
            dataset_name="sines",
            progress=False,
        )
    return quality_results(report, folder)


# ---------------------------------------------------------------------------------------------------------------
# layout
# ---------------------------------------------------------------------------------------------------------------
def build_timeseries_tab() -> list[tuple]:
    """The Time series tab's components and events (call inside a `gr.Tab`); returns its page-load events."""
    state = gr.State(None, time_to_live=FILE_TTL_SECONDS)
    model, model_md = model_box(ENV_MODEL, BUNDLED_LABEL, "TimeSeriesXAIPipeline", "series-model")
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            scheduler, steps, seed = sampling_controls("series-seed")
            num_series = gr.Slider(1, MAX_SERIES, value=16, step=1, label="Series")
            run = gr.Button("Generate", variant="primary", elem_id="series-generate")
            info = gr.Markdown()
            series_file = gr.File(label="Series (.csv)", interactive=False)
        with gr.Column(scale=2):
            series_plot = gr.Image(label="Generated windows", type="filepath", elem_id="series-plot", height=420)
    step_slider, step_md = step_controls(
        "Trajectory: x_t and the predicted x0 of the first windows at each recorded step",
        "series-step",
        "series-step-caption",
    )
    step_plot = gr.Image(label="x_t and predicted x0", type="filepath", elem_id="series-step-plot", height=420)
    with gr.Tabs():
        with gr.Tab("Attributions"):
            gr.Markdown(
                "Which time steps and channels of the noisy window x_t made the model predict a region of x0 (one "
                "channel, one time step, or everything) at the recorded step above."
            )
            with gr.Accordion("Method verdicts (faithfulness benchmark)", open=False):
                gr.Markdown(verdicts_markdown("timeseries"), elem_id="timeseries-verdicts")
            with gr.Row():
                method = gr.Dropdown(list(METHODS), value=METHODS[0], label="Method")
                sample = gr.Dropdown([0], value=0, label="Window")
                channel = gr.Dropdown([ALL_CHANNELS], value=ALL_CHANNELS, label="Target channel")
                time = gr.Slider(-1, 1, value=-1, step=1, label="Target time step (-1: all)")
            explain_btn, explain_outputs = attributions_panel("series", "Attributions")
        with gr.Tab("Commit steps"):
            commit_btn = gr.Button("When does each time step settle?")
            commit_md = gr.Markdown()
            with gr.Row():
                commit_plot = gr.Image(label="Commit step per channel and time step", type="filepath", height=300)
                commit_json = gr.JSON(label="Mean commit fraction per time step", max_height=300)
        quality_btn, quality_outputs = quality_tab(
            "series",
            f"The generated windows against {REAL_SERIES} real sines (the bundled model's data): TimeGAN's "
            f"discriminative and predictive scores ({EVALUATION_ITERATIONS} iterations each, to stay quick), "
            "the autocorrelation distance and the FID of window embeddings.",
        )

    model.change(
        model_info, model, model_md, api_name="timeseries_model_changed", api_visibility="private", **MODEL_RUN
    )
    run.click(
        generate,
        [model, scheduler, steps, seed, num_series],
        [series_plot, series_file, state, step_slider, step_plot, step_md, sample, channel, time, info],
        api_name="timeseries_generate",
        **MODEL_RUN,
    )
    step_slider.change(
        show_step, [state, step_slider], [step_plot, step_md], api_name="timeseries_trajectory", **SCRUB
    )
    explain_btn.click(
        explain,
        [state, method, sample, channel, time, step_slider],
        explain_outputs,
        api_name="timeseries_explain",
        **MODEL_RUN,
    )
    commit_btn.click(commit, [state], [commit_plot, commit_md, commit_json], api_name="timeseries_commit_steps")
    quality_btn.click(evaluate, [state], quality_outputs, api_name="timeseries_evaluate", **MODEL_RUN)
    return [(model_info, model, model_md, "timeseries_model_info")]
