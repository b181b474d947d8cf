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
from diffusers_xai.explain import series_commit_steps, series_target
from diffusers_xai.modalities.timeseries import make_sines
from diffusers_xai.viz import plot_series_attributions, plot_series_commit_steps

from .common import (
    SPACE_DIR,
    BundledModel,
    check_choice,
    check_int,
    handle_errors,
    new_output_path,
    recorded_step,
    save_tensors,
    save_text,
    state_file,
)
from .denoiser_tab import DenoiserTab

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
METHODS = DenoiserTab.methods


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


class TimeSeriesTab(DenoiserTab):
    name, prefix = "timeseries", "series"
    bundle, env_model = BundledModel(TimeSeriesXAIPipeline, BUNDLED_MODEL, BUNDLED_LABEL), ENV_MODEL
    count_label, count_noun, count_argument, output_type = "Series", "window(s)", "num_series", "np"
    default_count, max_count, max_work = 16, MAX_SERIES, MAX_WORK
    no_reference = (
        "Quality metrics compare with the real series the model was trained on, which are known only for the "
        "bundled model (TimeGAN sines)."
    )
    reference, min_evaluated, evaluated_noun = "real sines", MIN_EVALUATED_SERIES, "windows"
    trajectory_heading = "Trajectory: x_t and the predicted x0 of the first windows at each recorded step"
    attributions_tab = "Attributions"
    attributions_text = (
        "Which time steps and channels of the noisy window x_t made the model predict a region of x0 (one "
        "channel, one time step, or everything) at the recorded step above."
    )
    heatmap_label = "Attributions"
    commit_button, commit_file = "When does each time step settle?", "series-commit"
    commit_labels = ("Commit step per channel and time step", "Mean commit fraction per time step")
    commit_height = 300
    quality_text = (
        f"The generated windows against {REAL_SERIES} real sines (the bundled model's data): TimeGAN's "
        f"discriminative and predictive scores ({EVALUATION_ITERATIONS} iterations each, to stay quick), "
        "the autocorrelation distance and the FID of window embeddings."
    )

    @handle_errors
    def model_info(self, model: str | None) -> str:
        pipe = self.bundle.load(model)
        pre = pipe.preprocessor
        c, length = pre.sample_shape
        return (
            self.bundle.summary(pipe, model, f"windows of {length} steps x {c} channel(s) ({', '.join(pre.channels)})")
            + "."
        )

    @handle_errors
    def generate(
        self,
        model,
        scheduler,
        num_inference_steps,
        seed,
        num_series,
        progress=gr.Progress(track_tqdm=True),  # noqa: B008 (Gradio finds its progress tracker by this default)
    ):
        """Generate windows (with a trace), save them, plot the first ones and the last recorded step."""
        pipe, out, state, info = self.sample(model, scheduler, num_inference_steps, seed, num_series, progress)
        series = np.asarray(out.series, dtype=np.float32)  # [N, L, C], original units
        channels = pipe.preprocessor.channels
        path = save_tensors({"series": torch.from_numpy(series)}, new_output_path("series", ".safetensors"))
        state["series_path"] = str(path)
        n, length, c = series.shape
        header = "series,time," + ",".join(channels)
        lines = [f"{i},{t}," + ",".join(f"{v:.6g}" for v in series[i, t]) for i in range(n) for t in range(length)]
        csv_path = save_text("\n".join([header, *lines]) + "\n", new_output_path("series", ".csv"))
        panels = [(f"series {i}", series[i]) for i in range(min(n, PLOTTED_SERIES))]
        plot = plot_series(panels, channels, new_output_path("series-plot", ".png"))
        return (
            plot,
            str(csv_path),
            *self.trajectory(pipe, out.trace, state),
            gr.Dropdown(choices=list(range(n)), value=0),
            gr.Dropdown(choices=[ALL_CHANNELS, *channels], value=ALL_CHANNELS),
            gr.Slider(minimum=-1, maximum=length - 1, value=-1, step=1),
            info,
        )

    def step_view(self, pipe, step, state) -> str:
        """x_t and the predicted x0 of the first windows (model space)."""
        n = min(PLOTTED_SERIES // 2, step.latents.shape[0])
        panels = []
        for i in range(n):  # model space [B, C, L] → [L, C]
            panels.append((f"series {i}: x_t", step.latents[i].float().T.numpy()))
            panels.append((f"series {i}: predicted x0", step.pred_original_sample[i].float().T.numpy()))
        return plot_series(panels, pipe.preprocessor.channels, new_output_path("series-step", ".png"), "model space")

    @handle_errors
    def explain(self, state, method, sample, channel, time, position, progress=gr.Progress(track_tqdm=True)):  # noqa: B008
        """Attribute a region of one window's predicted x0 to every element of its x_t at one recorded step."""
        check_choice("method", method, METHODS)
        trace, pipe = self.open_run(state)
        channels = pipe.preprocessor.channels
        check_choice("channel", channel, [ALL_CHANNELS, *channels])
        position, step, sample = recorded_step(trace, position, sample)
        length = step.latents.shape[-1]
        time = check_int("Time step", time, -1, length - 1)
        region = series_target(
            channels, length, None if channel == ALL_CHANNELS else channel, None if time < 0 else time
        )
        explanation, folder = self.attribute(
            pipe,
            method,
            step,
            step.latents[sample : sample + 1],
            lambda explainer, inputs: explainer.attribute(inputs, target=region),
            progress,
        )
        title = f"{method}, t = {step.timestep}, target {channel} / {'all' if time < 0 else time}"
        path = str(folder / f"{method}_series.png")
        plot = plot_series_attributions(explanation, path, sample=0, step=0, channels=channels, title=title)
        per_time = explanation.attributions[0, 0].abs().sum(dim=0)
        per_channel = explanation.attributions[0, 0].abs().sum(dim=1)
        numbers = {
            "sample": sample,
            "target": {"channel": channel, "time": "all" if time < 0 else time},
            "per_time_step": [round(float(v), 6) for v in per_time],
            "per_channel": {c: round(float(v), 6) for c, v in zip(channels, per_channel)},
        }
        summary = (
            f"**{method}** at t = {step.timestep}, window {sample}, target {channel} / "
            f"{'every time step' if time < 0 else f'time step {time}'}: the most influential time step of x_t is "
            f"{int(per_time.argmax())} and the most influential channel `{channels[int(per_channel.argmax())]}`."
        )
        return self.explained(folder, method, step, plot, summary, numbers, explanation.attributions)

    def commit_steps(self, trace, pipe):
        return series_commit_steps(trace, channels=pipe.preprocessor.channels)

    def plot_commit_steps(self, result, path: str) -> str:
        return plot_series_commit_steps(result, path)

    def commit_summary(self, result) -> tuple[str, dict]:
        """When each time step of each channel settles along the trajectory of x0."""
        per_time = result.per_time_step()
        summary = (
            f"Time step {int(per_time.argmin())} settles earliest and time step {int(per_time.argmax())} last (mean "
            "commit step over windows and channels, as a fraction of the run)."
        )
        return summary, {"per_time_step": [round(float(v), 4) for v in per_time]}

    def load_generated(self, state) -> np.ndarray:
        return load_file(state_file(state, "series_path"))["series"].numpy()  # [N, L, C]

    def quality_report(self, state, synthetic, folder):
        """TimeGAN's discriminative and predictive scores, autocorrelation and embedding FID against real sines."""
        n, length, c = synthetic.shape
        real = make_sines(num_series=REAL_SERIES, sequence_length=length, num_channels=c, seed=1)
        return evaluate_timeseries(
            real,
            synthetic,
            discriminative_iterations=EVALUATION_ITERATIONS,
            predictive_iterations=EVALUATION_ITERATIONS,
            output_dir=folder,
            dataset_name="sines",
            progress=False,
        )

    # ---- layout ----
    def generated_component(self):
        return gr.Image(label="Generated windows", type="filepath", elem_id="series-plot", height=420)

    def step_component(self):
        return gr.Image(label="x_t and predicted x0", type="filepath", elem_id="series-step-plot", height=420)

    def target_inputs(self) -> list:
        return [
            gr.Dropdown([0], value=0, label="Window"),
            gr.Dropdown([ALL_CHANNELS], value=ALL_CHANNELS, label="Target channel"),
            gr.Slider(-1, 1, value=-1, step=1, label="Target time step (-1: all)"),
        ]


TAB = TimeSeriesTab()
# the handlers by name (the app's events and the tests call them)
source_of, load_series_pipeline = TAB.bundle.source_of, TAB.bundle.load
model_info, generate = TAB.model_info, TAB.generate
show_step, explain, commit, evaluate = TAB.show_step, TAB.explain, TAB.commit, TAB.evaluate
build_timeseries_tab = TAB.build
